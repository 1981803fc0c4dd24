package dev.srdeploy.tiling;

import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;

/**
 * Compares {@link Tiler} with the golden file written by the Python tiler. Used by the JUnit test
 * (Gradle) and runnable without JUnit: {@code java dev.srdeploy.tiling.GoldenCheck tiles.txt}
 * prints "N passed, 0 failed" and exits non-zero on any mismatch.
 */
public final class GoldenCheck {
    static final double TOL = 1e-12;

    /** Returns {checked cases, failures}; failure messages go to stderr. */
    public static int[] check(Path golden) throws IOException {
        int cases = 0, failures = 0;
        int h = 0, w = 0, th = 0, tw = 0, ov = 0, s = 0, tileIndex = 0;
        List<Tiler.Tile> tiles = null;
        Tiler.Tile current = null;
        try (BufferedReader in = Files.newBufferedReader(golden, StandardCharsets.UTF_8)) {
            String line;
            while ((line = in.readLine()) != null) {
                if (line.isEmpty() || line.startsWith("#")) continue;
                String[] f = line.split(" ");
                switch (f[0]) {
                    case "case":
                        if (tiles != null && tileIndex != tiles.size()) {
                            System.err.println("case " + h + "x" + w + ": Java plans " + tiles.size()
                                    + " tiles, golden has " + tileIndex);
                            failures++;
                        }
                        h = Integer.parseInt(f[1]); w = Integer.parseInt(f[2]);
                        th = Integer.parseInt(f[3]); tw = Integer.parseInt(f[4]);
                        ov = Integer.parseInt(f[5]); s = Integer.parseInt(f[6]);
                        tiles = Tiler.planTiles(Math.max(h, th), Math.max(w, tw), th, tw, ov);
                        tileIndex = 0;
                        cases++;
                        break;
                    case "tile":
                        current = tileIndex < tiles.size() ? tiles.get(tileIndex) : null;
                        tileIndex++;
                        int[] g = {Integer.parseInt(f[1]), Integer.parseInt(f[2]), Integer.parseInt(f[3]),
                                Integer.parseInt(f[4])};
                        if (current == null || current.y != g[0] || current.x != g[1] || current.h != g[2]
                                || current.w != g[3]) {
                            System.err.println("case " + h + "x" + w + ": tile " + (tileIndex - 1) + " is " + current
                                    + ", golden " + line);
                            failures++;
                            current = null;
                        }
                        break;
                    case "rows":
                    case "cols":
                        if (current == null) break;
                        double[] mine = f[0].equals("rows")
                                ? Tiler.rowWeights(current, Math.max(h, th), s, ov)
                                : Tiler.colWeights(current, Math.max(w, tw), s, ov);
                        if (mine.length != f.length - 1) {
                            System.err.println(f[0] + " length " + mine.length + " != " + (f.length - 1));
                            failures++;
                            break;
                        }
                        for (int i = 0; i < mine.length; i++) {
                            double want = Double.parseDouble(f[i + 1]);
                            if (Math.abs(mine[i] - want) > TOL) {
                                System.err.println("case " + h + "x" + w + " " + current + " " + f[0] + "[" + i
                                        + "] = " + mine[i] + ", golden " + want);
                                failures++;
                                break;
                            }
                        }
                        break;
                    default:
                        System.err.println("unexpected line: " + line);
                        failures++;
                }
            }
        }
        if (tiles != null && tileIndex != tiles.size()) {
            failures++;
        }
        return new int[] {cases, failures};
    }

    public static void main(String[] args) throws IOException {
        Path golden = Paths.get(args.length > 0 ? args[0] : "src/test/resources/golden/tiles.txt");
        int[] r = check(golden);
        if (r[0] == 0) {
            System.err.println("no cases in " + golden);
            System.exit(1);
        }
        System.out.println("tiler golden: " + (r[1] == 0 ? r[0] : 0) + " passed, " + r[1] + " failed");
        System.exit(r[1] == 0 ? 0 : 1);
    }
}
