package dev.srdeploy.tiling;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The app's benchmark, written in the JSON shape of {@code sr-bench --json} ({@code {"machine": {...},
 * "results": [...]}}, the same field names and statistics), so phone and host numbers go into one
 * table with {@code sr-bench --compare phone.json host.json}. Plain Java (no org.json, no Android), so
 * the JVM test that feeds its output to {@code sr-bench --compare} runs the code the app runs.
 */
public final class BenchReport {
    private final Map<String, String> machine = new LinkedHashMap<>();
    private final List<String> results = new ArrayList<>();

    /** {@code cpu}: e.g. Build.SOC_MODEL or Build.HARDWARE; {@code platform}: e.g. "Android 14 (API 34), Pixel 8". */
    public BenchReport(String cpu, int cores, String platform, String litert) {
        machine.put("cpu", quote(cpu));
        machine.put("cores", Integer.toString(cores));
        machine.put("platform", quote(platform));
        machine.put("libraries", "{\"litert\": " + quote(litert) + "}");
    }

    /**
     * One model on one accelerator: {@code timesMs} are the timed runs after the first inference
     * (one tile each); {@code delegate} "xnnpack", "gpu" or "npu"; {@code error} null when it ran.
     */
    public void add(String model, int tileH, int tileW, int threads, String delegate, double initMs, double firstMs,
                    double[] timesMs, String inputDtype, String outputDtype, String error) {
        StringBuilder b = new StringBuilder("{");
        field(b, "model", quote(model));
        field(b, "size", "[" + tileH + ", " + tileW + "]");
        field(b, "threads", Integer.toString(threads));
        field(b, "delegate", quote(delegate));
        field(b, "runtime", quote("compiled"));
        boolean ok = error == null && timesMs.length > 0;
        double[] t = timesMs.clone();
        Arrays.sort(t);
        field(b, "init_ms", ok ? num(initMs) : "null");
        field(b, "first_ms", ok ? num(firstMs) : "null");
        field(b, "min_ms", ok ? num(t[0]) : "null");
        field(b, "median_ms", ok ? num(median(t)) : "null");
        field(b, "mean_ms", ok ? num(mean(t)) : "null");
        field(b, "p90_ms", ok ? num(t[Math.min(t.length - 1, Math.max(0, (int) Math.rint(0.9 * (t.length - 1))))]) : "null");
        field(b, "max_ms", ok ? num(t[t.length - 1]) : "null");
        field(b, "std_ms", ok ? num(pstdev(t)) : "null");
        field(b, "runs", Integer.toString(ok ? t.length : 0));
        field(b, "peak_rss_mb", "null");
        field(b, "input", "{\"shape\": [1, " + tileH + ", " + tileW + ", 3], \"dtype\": " + quote(inputDtype) + "}");
        field(b, "output", "{\"dtype\": " + quote(outputDtype) + "}");
        field(b, "error", error == null ? "null" : quote(error));
        b.setLength(b.length() - 2);
        results.add(b.append("}").toString());
    }

    public String toJson() {
        StringBuilder b = new StringBuilder("{\"machine\": {");
        for (Map.Entry<String, String> e : machine.entrySet()) field(b, e.getKey(), e.getValue());
        b.setLength(b.length() - 2);
        b.append("}, \"results\": [");
        b.append(String.join(", ", results));
        return b.append("]}\n").toString();
    }

    private static void field(StringBuilder b, String key, String json) {
        b.append(quote(key)).append(": ").append(json).append(", ");
    }

    private static String num(double v) {
        return Double.isFinite(v) ? String.format(Locale.ROOT, "%.4f", v) : "null";
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : (s == null ? "" : s).toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    private static double median(double[] t) {
        int n = t.length;
        return n % 2 == 1 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2.0;
    }

    private static double mean(double[] t) {
        double s = 0;
        for (double v : t) s += v;
        return s / t.length;
    }

    private static double pstdev(double[] t) {
        if (t.length < 2) return 0.0;
        double m = mean(t), s = 0;
        for (double v : t) s += (v - m) * (v - m);
        return Math.sqrt(s / t.length);
    }

    /** JVM entry for the host test: a report with fixed figures, to stdout. */
    public static void main(String[] args) {
        BenchReport r = new BenchReport("SM8650", 8, "Android 14 (API 34), test \"quote\"", "2.2.0");
        r.add("model_int8.tflite", 64, 64, 4, "xnnpack", 12.5, 3.25, new double[] {2.0, 1.0, 4.0, 3.0}, "float32",
              "float32", null);
        r.add("model_int8.SM8650.tflite", 64, 64, 1, "npu", 0, 0, new double[0], "float32", "float32",
              "no model compiled for SM8450");
        System.out.print(r.toJson());
    }
}
