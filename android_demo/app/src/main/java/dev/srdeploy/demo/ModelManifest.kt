package dev.srdeploy.demo

import android.content.Context
import org.json.JSONObject

/**
 * The I/O contract of the bundled model, read from assets/srdeploy/manifest.json (written by
 * `sr-bundle`), never hard-coded: input tile size, scale, dtype, value range and quantization.
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
) {
    companion object {
        const val ASSET_DIR = "srdeploy"
        private val SUPPORTED_DTYPES = setOf("float32", "uint8", "int8")

        fun load(context: Context): ModelManifest {
            val text = context.assets.open("$ASSET_DIR/manifest.json").bufferedReader().use { it.readText() }
            val json = JSONObject(text)
            val input = json.getJSONObject("input")
            val output = json.getJSONObject("output")
            val shape = input.getJSONArray("shape") // [1, H, W, 3]
            val manifest = ModelManifest(
                model = json.getString("model"),
                scale = json.getInt("scale"),
                file = json.getString("file"),
                precision = json.getString("precision"),
                tileHeight = shape.getInt(1),
                tileWidth = shape.getInt(2),
                overlap = json.optInt("overlap", 8),
                inputDtype = input.getString("dtype"),
                outputDtype = output.getString("dtype"),
                inputScale = input.optDouble("scale", 0.0).toFloat(),
                inputZeroPoint = input.optInt("zero_point", 0),
                outputScale = output.optDouble("scale", 0.0).toFloat(),
                outputZeroPoint = output.optInt("zero_point", 0),
            )
            require(manifest.inputDtype in SUPPORTED_DTYPES && manifest.outputDtype in SUPPORTED_DTYPES) {
                "unsupported model I/O ${manifest.inputDtype} -> ${manifest.outputDtype}"
            }
            return manifest
        }
    }
}
