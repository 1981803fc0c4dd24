package dev.srdeploy.tiling;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.nio.file.Paths;
import org.junit.Test;

/** JUnit entry (Gradle: ./gradlew :tiling:test) for the golden comparison. */
public class TilerGoldenTest {
    @Test
    public void matchesPythonTiler() throws Exception {
        int[] r = GoldenCheck.check(Paths.get("src/test/resources/golden/tiles.txt"));
        assertTrue("golden file has cases", r[0] > 0);
        assertEquals("mismatches with the Python tiler", 0, r[1]);
    }

    @Test
    public void blendOfConstantTilesIsConstant() {
        float[] img = new float[200 * 140 * 3];
        Tiler.Blender b = new Tiler.Blender(100, 70, 48, 48, 2, 8,
                (y0, n, rgb, off) -> System.arraycopy(rgb, off, img, y0 * 140 * 3, n * 140 * 3));
        for (Tiler.Tile t : Tiler.planTiles(100, 70, 48, 48, 8)) {
            float[] out = new float[t.h * 2 * t.w * 2 * 3];
            java.util.Arrays.fill(out, 0.25f);
            b.add(t, out);
        }
        b.finish();
        for (float v : img) {
            assertEquals(0.25f, v, 1e-6f);
        }
    }

    @Test
    public void streamedBlendMatchesFullBlendAndFitsTheBudget() {
        BlendCheck.failures = 0;
        BlendCheck.checkCase(150, 200, 48, 64, 8, 4, 7);
        Tiler.Blender big = new Tiler.Blender(3000, 4000, 480, 720, 2, 8, (y0, n, rgb, off) -> {});
        assertEquals(0, BlendCheck.failures);
        assertTrue(big.bufferBytes() <= BlendCheck.BUDGET_12MP_X2);
    }
}
