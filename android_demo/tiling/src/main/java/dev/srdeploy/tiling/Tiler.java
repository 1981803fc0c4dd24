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

    /** Receives finished output rows: {@code n} rows from output row {@code y0}, RGB float row-major. */
    public interface RowSink {
        void rows(int y0, int n, float[] rgb, int offset);
    }

    /**
     * Blends tile outputs into an {@code h*scale x w*scale} image and streams every finished output
     * row to a {@link RowSink}, holding only one band of {@code tileH*scale} output rows: a 12 MP photo at
     * x2 with 480-row tiles needs ~92 MB here, where a whole double-precision image needed 1.5 GB.
     *
     * <p>Tiles must arrive in {@link #planTiles} order (row-major). The weights of a tile grid are
     * separable, so the sum of weights at an output pixel is {@code rowSum[y] * colSum[x]}: it is
     * computed once per axis and each tile's contribution is normalized as it is added, so the band
     * holds final values and needs no weight plane. Rows above the next tile row's start are final
     * when a tile row ends: they go to the sink and the band moves down.
     */
    public static final class Blender {
        private final int scale, overlap, outH, outW, h, w, bandRows;
        private final double[] rowSum, colSum;
        private final float[] band;
        private final RowSink sink;
        private final List<Integer> rowStarts;
        private int bandStart = 0, rowIndex = 0, lastY = -1;
        private boolean finished = false;

        public Blender(int h, int w, int tileH, int tileW, int scale, int overlap, RowSink sink) {
            this.h = h;
            this.w = w;
            this.scale = scale;
            this.overlap = overlap;
            this.outH = h * scale;
            this.outW = w * scale;
            this.sink = sink;
            this.rowStarts = axisStarts(h, tileH, overlap);
            this.bandRows = Math.min(tileH, h) * scale;
            this.band = new float[bandRows * outW * 3];
            this.rowSum = new double[outH];
            this.colSum = new double[outW];
            for (int y : rowStarts) {
                double[] wy = rowWeights(new Tile(y, 0, tileH, tileW), h, scale, overlap);
                for (int r = 0; r < wy.length && y * scale + r < outH; r++) rowSum[y * scale + r] += wy[r];
            }
            for (int x : axisStarts(w, tileW, overlap)) {
                double[] wx = colWeights(new Tile(0, x, tileH, tileW), w, scale, overlap);
                for (int c = 0; c < wx.length && x * scale + c < outW; c++) colSum[x * scale + c] += wx[c];
            }
        }

        /** Bytes this blender holds (the band and the two weight sums), whatever the image height. */
        public long bufferBytes() {
            return 4L * band.length + 8L * (rowSum.length + colSum.length);
        }

        /** Add one tile's output ({@code tile.h*scale x tile.w*scale x 3}, row-major). */
        public void add(Tile t, float[] out) {
            if (finished) throw new IllegalStateException("add after finish");
            if (t.y != lastY) {  // a new tile row: what lies above it is final
                if (t.y < lastY || rowIndex >= rowStarts.size() || rowStarts.get(rowIndex) != t.y) {
                    throw new IllegalArgumentException("tiles must come in planTiles order; got " + t);
                }
                flushTo(t.y * scale);
                lastY = t.y;
                rowIndex++;
            }
            double[] wy = rowWeights(t, h, scale, overlap);
            double[] wx = colWeights(t, w, scale, overlap);
            int th = t.h * scale, tw = t.w * scale;
            for (int r = 0; r < th; r++) {
                int oy = t.y * scale + r;
                if (oy >= outH) break;
                int b = oy - bandStart;
                for (int c = 0; c < tw; c++) {
                    int ox = t.x * scale + c;
                    if (ox >= outW) break;
                    double sum = rowSum[oy] * colSum[ox];
                    if (sum <= 0) continue;
                    float wt = (float) (wy[r] * wx[c] / sum);
                    int o = (b * outW + ox) * 3;
                    int i = (r * tw + c) * 3;
                    band[o] += wt * out[i];
                    band[o + 1] += wt * out[i + 1];
                    band[o + 2] += wt * out[i + 2];
                }
            }
        }

        /** Streams the remaining rows; call once after the last tile. */
        public void finish() {
            if (!finished) {
                flushTo(outH);
                finished = true;
            }
        }

        /** Emit rows [bandStart, y) and move the band to start at y. */
        private void flushTo(int y) {
            int n = Math.min(y, outH) - bandStart;
            if (n <= 0) return;
            sink.rows(bandStart, n, band, 0);
            int keep = bandRows - n;
            if (keep > 0) System.arraycopy(band, n * outW * 3, band, 0, keep * outW * 3);
            java.util.Arrays.fill(band, Math.max(keep, 0) * outW * 3, band.length, 0f);
            bandStart += n;
        }
    }
}
