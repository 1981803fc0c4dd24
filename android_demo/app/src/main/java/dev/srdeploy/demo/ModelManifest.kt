package dev.srdeploy.demo

import android.content.Context
import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject

/** An accelerator the app can run the bundled model on, in `sr-bundle`'s spelling. */
enum class Accel(val key: String, val label: String) {
    NPU("npu", "NPU (LiteRT, Qualcomm-compiled model)"),
    GPU("gpu", "GPU (LiteRT GPU accelerator)"),
    CPU("cpu", "CPU (XNNPACK)");

    companion object {
        fun of(key: String): Accel? = values().firstOrNull { it.key == key }
    }
}

/**
 * The I/O contract of the bundled model, read from assets/srdeploy/manifest.json (written by
 * `sr-bundle`), never hard-coded: input tile size, scale, dtype, value range and quantization, the
 * Qualcomm-compiled models by SoC and the order to try accelerators in.
 *
 * The manifest is validated field by field: an asset can be replaced by hand, so a wrong type, a
 * missing field, a file name with a folder in it or a quantization the app cannot apply is a
 * [BadManifest] naming the field, shown on screen — never a crash deeper in.
 */
data class ModelManifest(
    val model: String,
    val scale: Int,
    val file: String,
    val precision: String,
    val tileHeight: Int,
    val tileWidth: Int,
    val overlap: Int,
    val inputDtype: String,
    val outputDtype: String,
    val inputScale: Float,
    val inputZeroPoint: Int,
    val outputScale: Float,
    val outputZeroPoint: Int,
    /** SoC (Build.SOC_MODEL, e.g. "SM8650") -> model compiled for its NPU */
    val compiled: Map<String, String>,
    val accelerators: List<Accel>,
    /** XNNPACK flags for the CPU path, as `sr-export --memory-budget` measured and chose them; null: LiteRT's defaults */
    val xnnpackFlags: Int?,
) {
    class BadManifest(message: String) : Exception(message)

    companion object {
        const val ASSET_DIR = "srdeploy"
        private val DTYPES = setOf("float32", "uint8", "int8")
        private val PRECISIONS = setOf("fp32", "fp16", "int8")
        private val PLAIN_FILE = Regex("[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\\.tflite")
        private val SOC = Regex("SM[0-9]{4}[A-Z]?")
        private const val MAX_MANIFEST_BYTES = 1 shl 20
        private const val MAX_SIDE = 4096

        fun load(context: Context): ModelManifest {
            val bytes = context.assets.open("$ASSET_DIR/manifest.json").use { s ->
                val buf = s.readBytes()
                if (buf.size > MAX_MANIFEST_BYTES) throw BadManifest("manifest.json is larger than 1 MB")
                buf
            }
            return parse(String(bytes, Charsets.UTF_8))
        }

        /** Parses and validates a manifest; every problem is a [BadManifest] naming the field. */
        fun parse(text: String): ModelManifest {
            val json = try {
                JSONObject(text)
            } catch (e: JSONException) {
                throw BadManifest("manifest.json is not a JSON object")
            }
            try {
                return validate(json)
            } catch (e: JSONException) {  // a missing field or a wrong type
                throw BadManifest("manifest.json: ${e.message}")
            }
        }

        private fun validate(json: JSONObject): ModelManifest {
            fun check(ok: Boolean, what: String) {
                if (!ok) throw BadManifest("manifest.json: $what")
            }
            val input = json.getJSONObject("input")
            val output = json.getJSONObject("output")
            val inShape = ints(input.getJSONArray("shape"), "input.shape")
            val outShape = ints(output.getJSONArray("shape"), "output.shape")
            val scale = json.getInt("scale")
            check(scale in 1..8, "scale must be 1..8")
            check(inShape.size == 4 && inShape[0] == 1 && inShape[3] == 3 && inShape[1] in 1..MAX_SIDE &&
                inShape[2] in 1..MAX_SIDE, "input.shape must be [1, H, W, 3] with H, W in 1..$MAX_SIDE")
            check(outShape == listOf(1, inShape[1] * scale, inShape[2] * scale, 3),
                "output.shape must be the input's times scale")
            val overlap = json.optInt("overlap", 8)
            check(overlap >= 0 && 2 * overlap < minOf(inShape[1], inShape[2]), "overlap must be 0 <= 2*overlap < tile side")
            val file = json.getString("file")
            check(PLAIN_FILE.matches(file), "file must be a plain .tflite name (no folders)")
            val precision = json.getString("precision")
            check(precision in PRECISIONS, "precision must be one of $PRECISIONS")
            val inDtype = input.getString("dtype")
            val outDtype = output.getString("dtype")
            check(inDtype in DTYPES && outDtype in DTYPES, "I/O dtypes must be among $DTYPES")
            fun quant(side: JSONObject, name: String, dtype: String): Pair<Float, Int> {
                if (dtype == "float32") return 0f to 0
                val s = side.getDouble("scale").toFloat()
                val z = side.getInt("zero_point")
                val range = if (dtype == "uint8") 0..255 else -128..127
                check(s > 0f && s.isFinite(), "$name.scale must be > 0 for $dtype I/O")
                check(z in range, "$name.zero_point must be in $range")
                return s to z
            }
            val (inScale, inZero) = quant(input, "input", inDtype)
            val (outScale, outZero) = quant(output, "output", outDtype)
            val compiled = LinkedHashMap<String, String>()
            json.optJSONObject("compiled")?.let { c ->
                for (soc in c.keys()) {
                    val f = c.getString(soc)
                    check(SOC.matches(soc), "compiled: '$soc' is not a Snapdragon SoC name (SMnnnn)")
                    check(PLAIN_FILE.matches(f), "compiled.$soc must be a plain .tflite name (no folders)")
                    compiled[soc] = f
                }
            }
            val accel = json.optJSONArray("accelerators")?.let { a ->
                (0 until a.length()).map { i ->
                    Accel.of(a.getString(i)) ?: throw BadManifest("manifest.json: accelerators[$i] must be npu, gpu or cpu")
                }
            } ?: listOf(Accel.GPU, Accel.CPU)
            check(accel.isNotEmpty() && accel.toSet().size == accel.size, "accelerators must be a non-empty list without repeats")
            check(Accel.NPU !in accel || compiled.isNotEmpty(), "accelerators lists npu but no compiled model is bundled")
            val flags = if (json.isNull("xnnpack_flags")) null else json.get("xnnpack_flags").let { v ->
                check(v is Int && v >= 0, "xnnpack_flags must be a non-negative integer")
                v as Int
            }
            val model = json.getString("model")
            check(model.isNotBlank() && model.length <= 64, "model must be a name of 1..64 characters")
            return ModelManifest(model, scale, file, precision, inShape[1], inShape[2], overlap, inDtype, outDtype,
                inScale, inZero, outScale, outZero, compiled, accel, flags)
        }

        private fun ints(a: JSONArray, name: String): List<Int> = (0 until a.length()).map { i ->
            val v = a.get(i)
            if (v !is Int) throw BadManifest("manifest.json: $name[$i] must be an integer")
            v
        }
    }
}
