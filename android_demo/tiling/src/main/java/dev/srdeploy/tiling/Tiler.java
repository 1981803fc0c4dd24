package dev.srdeploy.tiling;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Tile plan and blend weights for running a fixed-shape super-resolution model over an image of
 * any size. Plain Java with no Android dependency, so it runs in a JVM unit test; it is the same
 * arithmetic as the Python tiler ({@code srdeploy.tiling}), which writes golden files this
 * module is tested against.
 *
 * <p>{@code overlap} is the context margin in LR pixels a tile carries on each inner side.
 * Tiles are spread evenly so that neighbours share at least {@code 2 * overlap} pixels. Each
 * tile's weight is 0 within {@code overlap / 2} of an inner edge and rises linearly to 1 at
 * {@code 3 * overlap / 2} (in output pixels: times the scale); edges on the image border are not
 * ramped. The blended output is the weighted sum divided by the sum of weights.
 */
public final class Tiler {
    private Tiler() {}

    /** A tile's LR rectangle; it may extend past a small image (the app pads such images). */
    public static final class Tile {
        public final int y, x, h, w;

        public Tile(int y, int x, int h, int w) {
            this.y = y;
            this.x = x;
            this.h = h;
            this.w = w;
        }

        @Override
        public String toString() {
            return "Tile(y=" + y + ", x=" + x + ", h=" + h + ", w=" + w + ")";
        }
    }

    /** Evenly spread tile starts covering [0, length) with neighbours sharing >= 2 * overlap. */
    public static List<Integer> axisStarts(int length, int tile, int overlap) {
        int shared = 2 * overlap;
        if (tile <= 0 || overlap < 0 || shared >= tile) {
            throw new IllegalArgumentException("need 0 <= 2*overlap < tile, got tile " + tile + ", overlap " + overlap);
        }
        if (length <= tile) {
            return Collections.singletonList(0);
        }
        int n = (int) Math.ceil((double) (length - shared) / (tile - shared));
        n = Math.max(n, 2);
        List<Integer> starts = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            // Python's round() rounds halves to even; Math.rint does the same.
            starts.add((int) Math.rint((double) i * (length - tile) / (n - 1)));
        }
        return starts;
    }

    /** Tiles in row-major order for an h x w LR image and a tileH x tileW model input. */
    public static List<Tile> planTiles(int h, int w, int tileH, int tileW, int overlap) {
        List<Tile> tiles = new ArrayList<>();
        for (int y : axisStarts(h, tileH, overlap)) {
            for (int x : axisStarts(w, tileW, overlap)) {
                tiles.add(new Tile(y, x, tileH, tileW));
            }
        }
        return tiles;
    }

    static double[] ramp(int n, boolean startRamp, boolean endRamp, double margin, double width) {
        double[] w = new double[n];
        for (int i = 0; i < n; i++) {
            double dist = i + 0.5;
            double v = 1.0;
            if (width > 0) {
                if (startRamp) {
                    v = Math.min(v, clamp01((dist - margin) / width));
                }
                if (endRamp) {
                    v = Math.min(v, clamp01((n - dist - margin) / width));
                }
            }
            w[i] = v;
        }
        return w;
    }

    private static double clamp01(double v) {
        return v < 0 ? 0 : (v > 1 ? 1 : v);
    }

    /** Row weights (length tile.h * scale) of a tile in an h x w LR image. */
    public static double[] rowWeights(Tile t, int h, int scale, int overlap) {
        return ramp(t.h * scale, t.y > 0, t.y + t.h < h, overlap * scale / 2.0, overlap * (double) scale);
    }

    /** Column weights (length tile.w * scale) of a tile in an h x w LR image. */
    public static double[] colWeights(Tile t, int w, int scale, int overlap) {
        return ramp(t.w * scale, t.x > 0, t.x + t.w < w, overlap * scale / 2.0, overlap * (double) scale);
    }

    /**
     * Accumulates tile outputs (RGB float, row-major, 3 channels) into a blended output of
     * outH x outW; call {@link #add} for every tile, then {@link #result}.
     */
    public static final class Blender {
        private final int h, w, scale, overlap, outH, outW;
        private final double[] acc;
        private final double[] wsum;

        public Blender(int h, int w, int scale, int overlap) {
            this.h = h;
            this.w = w;
            this.scale = scale;
            this.overlap = overlap;
            this.outH = h * scale;
            this.outW = w * scale;
            this.acc = new double[outH * outW * 3];
            this.wsum = new double[outH * outW];
        }

        /** Add one tile's output ({@code tile.h*scale x tile.w*scale x 3}, row-major). */
        public void add(Tile t, float[] out) {
            double[] wy = rowWeights(t, h, scale, overlap);
            double[] wx = colWeights(t, w, scale, overlap);
            int th = t.h * scale, tw = t.w * scale;
            for (int r = 0; r < th; r++) {
                int oy = t.y * scale + r;
                if (oy >= outH) break;
                for (int c = 0; c < tw; c++) {
                    int ox = t.x * scale + c;
                    if (ox >= outW) break;
                    double wt = wy[r] * wx[c];
                    int o = oy * outW + ox;
                    int i = (r * tw + c) * 3;
                    wsum[o] += wt;
                    acc[o * 3] += wt * out[i];
                    acc[o * 3 + 1] += wt * out[i + 1];
                    acc[o * 3 + 2] += wt * out[i + 2];
                }
            }
        }

        /** The blended image, RGB float row-major, {@code h*scale x w*scale x 3}. */
        public float[] result() {
            float[] res = new float[acc.length];
            for (int o = 0; o < wsum.length; o++) {
                for (int k = 0; k < 3; k++) {
                    res[o * 3 + k] = (float) (acc[o * 3 + k] / wsum[o]);
                }
            }
            return res;
        }
    }
}
