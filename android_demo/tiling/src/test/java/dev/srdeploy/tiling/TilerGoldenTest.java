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
        Tiler.Blender b = new Tiler.Blender(100, 70, 2, 8);
        for (Tiler.Tile t : Tiler.planTiles(100, 70, 48, 48, 8)) {
            float[] out = new float[t.h * 2 * t.w * 2 * 3];
            java.util.Arrays.fill(out, 0.25f);
            b.add(t, out);
        }
        for (float v : b.result()) {
            assertEquals(0.25f, v, 1e-6f);
        }
    }
}
