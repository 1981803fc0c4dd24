package dev.srdeploy.tiling;

import java.util.List;
import java.util.Random;

/**
 * Checks the streaming {@link Tiler.Blender} against a plain full-image weighted average (written
 * here, in doubles, as the Python tiler computes it) on random tile outputs, that every output row
 * reaches the sink exactly once and in order, and the blender's memory bound for a 12 MP photo at x2.
 * Runnable without JUnit: {@code java dev.srdeploy.tiling.BlendCheck} exits non-zero on any failure.
 */
public final class BlendCheck {
    static final double TOL = 1e-5;  // the band is float
    /** A 12 MP photo (4000 x 3000) at x2 with 480 x 720 tiles: the band must stay within this. */
    static final long BUDGET_12MP_X2 = 100L << 20;

    static int failures = 0;

    static void fail(String msg) {
        System.err.println(msg);
        failures++;
    }

    static void checkCase(int h, int w, int th, int tw, int ov, int s, long seed) {
        Random rnd = new Random(seed);
        int oh = h * s, ow = w * s;
        double[] acc = new double[oh * ow * 3];
        double[] wsum = new double[oh * ow];
        float[] got = new float[oh * ow * 3];
        int[] next = {0};
        Tiler.Blender b = new Tiler.Blender(h, w, th, tw, s, ov, (y0, n, rgb, off) -> {
            if (y0 != next[0]) fail(h + "x" + w + ": rows from " + y0 + " arrived, expected " + next[0]);
            System.arraycopy(rgb, off, got, y0 * ow * 3, n * ow * 3);
            next[0] = y0 + n;
        });
        List<Tiler.Tile> tiles = Tiler.planTiles(h, w, th, tw, ov);
        for (Tiler.Tile t : tiles) {
            float[] out = new float[t.h * s * t.w * s * 3];
            for (int i = 0; i < out.length; i++) out[i] = rnd.nextFloat();
            double[] wy = Tiler.rowWeights(t, h, s, ov), wx = Tiler.colWeights(t, w, s, ov);
            for (int r = 0; r < t.h * s && t.y * s + r < oh; r++) {
                for (int c = 0; c < t.w * s && t.x * s + c < ow; c++) {
                    int o = (t.y * s + r) * ow + t.x * s + c, i = (r * t.w * s + c) * 3;
                    wsum[o] += wy[r] * wx[c];
                    for (int k = 0; k < 3; k++) acc[o * 3 + k] += wy[r] * wx[c] * out[i + k];
                }
            }
            b.add(t, out);
        }
        b.finish();
        if (next[0] != oh) fail(h + "x" + w + ": " + next[0] + " of " + oh + " output rows arrived");
        double worst = 0;
        for (int o = 0; o < wsum.length; o++) {
            for (int k = 0; k < 3; k++) worst = Math.max(worst, Math.abs(acc[o * 3 + k] / wsum[o] - got[o * 3 + k]));
        }
        if (!(worst <= TOL)) fail("case " + h + "x" + w + " tile " + th + "x" + tw + " ov " + ov + " x" + s
                + ": max |streamed - full blend| = " + worst);
    }

    public static void main(String[] args) {
        int[][] cases = {  // h, w, tileH, tileW, overlap, scale
            {64, 64, 32, 32, 4, 2}, {100, 37, 32, 24, 4, 3}, {31, 75, 32, 32, 8, 2}, {150, 200, 48, 64, 8, 4},
            {33, 33, 32, 32, 0, 2}, {32, 32, 32, 32, 8, 2}, {257, 129, 64, 64, 8, 2},
        };
        long seed = 1;
        for (int[] c : cases) checkCase(c[0], c[1], c[2], c[3], c[4], c[5], seed++);
        // out-of-order tiles are refused, not blended wrongly
        try {
            Tiler.Blender b = new Tiler.Blender(100, 100, 32, 32, 2, 4, (y0, n, rgb, off) -> {});
            List<Tiler.Tile> t = Tiler.planTiles(100, 100, 32, 32, 4);
            b.add(t.get(t.size() - 1), new float[64 * 64 * 3]);
            b.add(t.get(0), new float[64 * 64 * 3]);
            fail("tiles out of order were accepted");
        } catch (IllegalArgumentException expected) {
            // refused
        }
        Tiler.Blender big = new Tiler.Blender(3000, 4000, 480, 720, 2, 8, (y0, n, rgb, off) -> {});
        long full = 8L * 4000 * 2 * 3000 * 2 * 4;  // the former blender: RGB + weight sum, doubles
        System.out.printf("12 MP x2, 480x720 tiles: blend buffer %.1f MB (budget %.0f MB; a full double image: %.0f MB)%n",
                big.bufferBytes() / 1048576.0, BUDGET_12MP_X2 / 1048576.0, full / 1048576.0);
        if (big.bufferBytes() > BUDGET_12MP_X2) fail("12 MP x2 blend buffer " + big.bufferBytes() + " B over budget");
        System.out.println("tiler blend: " + (failures == 0 ? cases.length + " cases passed" : failures + " failed"));
        System.exit(failures == 0 ? 0 : 1);
    }
}
