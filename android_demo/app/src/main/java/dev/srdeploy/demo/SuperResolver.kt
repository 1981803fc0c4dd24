package dev.srdeploy.demo

import android.content.Context
import android.graphics.Bitmap
import android.os.Build
import android.os.SystemClock
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.BuiltinNpuAcceleratorProvider
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import com.google.ai.edge.litert.TensorBuffer
import dev.srdeploy.tiling.Tiler
import java.io.Closeable

/** What the user picked: one accelerator, or the bundle's order (NPU -> GPU -> CPU). */
enum class Backend(val label: String) {
    AUTO("Auto (bundle's order)"), NPU("NPU"), GPU("GPU"), CPU("CPU (XNNPACK)")
}

/** Per-run timings, in milliseconds. */
data class RunStats(val tileMs: List<Double>, val totalMs: Double, val backend: String)

/**
 * Runs the bundled fixed-shape SR model over a bitmap of any size, tile by tile, with the same
 * tile plan and blending as `sr-upscale` (the shared [Tiler]), through LiteRT's CompiledModel API:
 * on the NPU with the model compiled for this phone's SoC, on the GPU accelerator, or on the CPU.
 * [Backend.AUTO] tries the manifest's accelerators in order and keeps the first that loads;
 * [attempts] says why the others did not, [backendUsed] what ran.
 */
class SuperResolver(context: Context, val manifest: ModelManifest, backend: Backend, threads: Int) : Closeable {
    private var env: Environment? = null
    private val model: CompiledModel
    private val inputs: List<TensorBuffer>
    private val outputs: List<TensorBuffer>
    val backendUsed: String
    val attempts = ArrayList<String>()

    init {
        val order = when (backend) {
            Backend.AUTO -> manifest.accelerators
            Backend.NPU -> listOf(Accel.NPU)
            Backend.GPU -> listOf(Accel.GPU)
            Backend.CPU -> listOf(Accel.CPU)
        }
        var opened: Pair<CompiledModel, String>? = null
        for (accel in order) {
            try {
                opened = open(context, accel, threads)
                break
            } catch (e: Exception) {  // LiteRtException, or no model for this SoC: try the next one
                attempts += "${accel.key}: ${e.message}"
                env?.close()
                env = null
            }
        }
        val (m, used) = opened ?: throw IllegalStateException("no accelerator could run the model (" +
            attempts.joinToString("; ") + ")")
        model = m
        backendUsed = used
        inputs = model.createInputBuffers()
        outputs = model.createOutputBuffers()
    }

    private fun open(context: Context, accel: Accel, threads: Int): Pair<CompiledModel, String> {
        val assets = context.assets
        return when (accel) {
            Accel.NPU -> {
                val soc = socModel() ?: throw IllegalStateException("this Android version does not report its SoC")
                val file = manifest.compiled[soc]
                    ?: throw IllegalStateException("no model compiled for $soc (bundled: ${manifest.compiled.keys})")
                val e = Environment.create(BuiltinNpuAcceleratorProvider(context))
                env = e
                CompiledModel.create(assets, "${ModelManifest.ASSET_DIR}/$file",
                    CompiledModel.Options(Accelerator.NPU), e) to "NPU ($soc, $file)"
            }
            Accel.GPU -> CompiledModel.create(assets, "${ModelManifest.ASSET_DIR}/${manifest.file}",
                CompiledModel.Options(Accelerator.GPU)) to "GPU (${manifest.file})"
            Accel.CPU -> {
                val options = CompiledModel.Options(Accelerator.CPU)
                // the flags the export's --memory-budget measured (e.g. transient indirection buffers), else LiteRT's
                options.cpuOptions = CompiledModel.CpuOptions(numThreads = threads, xnnPackFlags = manifest.xnnpackFlags)
                CompiledModel.create(assets, "${ModelManifest.ASSET_DIR}/${manifest.file}", options) to
                    "CPU (XNNPACK, $threads threads" +
                    (manifest.xnnpackFlags?.let { ", flags 0x" + Integer.toHexString(it) } ?: "") + ", ${manifest.file})"
            }
        }
    }

    /**
     * Upscales [src] into a new bitmap; [onTile] reports progress (done, total). Finished output rows
     * stream from the blender straight into the bitmap, so memory is the two bitmaps, the padded
     * input's pixels and one band of tile rows — not a float copy of the whole output.
     */
    fun upscale(src: Bitmap, onTile: (Int, Int) -> Unit = { _, _ -> }): Pair<Bitmap, RunStats> {
        val m = manifest
        val s = m.scale
        // Images smaller than one tile are padded (mirrored) up to it, as the Python tiler does.
        val h = maxOf(src.height, m.tileHeight)
        val w = maxOf(src.width, m.tileWidth)
        val pixels = mirrorPad(src, h, w)
        val outW = src.width * s
        val outH = src.height * s
        val out = Bitmap.createBitmap(outW, outH, Bitmap.Config.ARGB_8888)
        val row = IntArray(outW)
        val blender = Tiler.Blender(h, w, m.tileHeight, m.tileWidth, s, m.overlap) { y0, n, rgb, off ->
            for (r in 0 until n) {
                val y = y0 + r
                if (y >= outH) break
                val base = off + r * w * s * 3
                for (x in 0 until outW) {
                    val i = base + x * 3
                    row[x] = (0xFF shl 24) or (c8(rgb[i]) shl 16) or (c8(rgb[i + 1]) shl 8) or c8(rgb[i + 2])
                }
                out.setPixels(row, 0, outW, 0, y, outW, 1)
            }
        }
        val tiles = Tiler.planTiles(h, w, m.tileHeight, m.tileWidth, m.overlap)
        val n = m.tileHeight * m.tileWidth * 3
        val floatIn = if (m.inputDtype == "float32") FloatArray(n) else null
        val byteIn = if (m.inputDtype == "float32") null else ByteArray(n)
        val tileMs = ArrayList<Double>(tiles.size)
        val t0 = SystemClock.elapsedRealtimeNanos()
        tiles.forEachIndexed { i, t ->
            fillInput(floatIn, byteIn, pixels, w, t)
            val ts = SystemClock.elapsedRealtimeNanos()
            if (floatIn != null) inputs[0].writeFloat(floatIn) else inputs[0].writeInt8(byteIn!!)
            model.run(inputs, outputs)
            val result = readOutput()
            tileMs += (SystemClock.elapsedRealtimeNanos() - ts) / 1e6
            blender.add(t, result)
            onTile(i + 1, tiles.size)
        }
        blender.finish()
        val totalMs = (SystemClock.elapsedRealtimeNanos() - t0) / 1e6
        return out to RunStats(tileMs, totalMs, backendUsed)
    }

    private fun c8(v: Float) = Math.round(v.coerceIn(0f, 1f) * 255f)

    private fun mirrorPad(src: Bitmap, h: Int, w: Int): IntArray {
        val px = IntArray(src.width * src.height)
        src.getPixels(px, 0, src.width, 0, 0, src.width, src.height)
        if (h == src.height && w == src.width) return px
        val out = IntArray(h * w)
        for (y in 0 until h) {
            val sy = mirror(y, src.height)
            for (x in 0 until w) out[y * w + x] = px[sy * src.width + mirror(x, src.width)]
        }
        return out
    }

    // numpy's "symmetric" padding: ... 2 1 0 | 0 1 2 ... n-1 | n-1 n-2 ...
    private fun mirror(i: Int, n: Int): Int {
        var k = i % (2 * n)
        if (k >= n) k = 2 * n - 1 - k
        return k
    }

    private fun fillInput(f: FloatArray?, b: ByteArray?, px: IntArray, stride: Int, t: Tiler.Tile) {
        val m = manifest
        var k = 0
        for (y in t.y until t.y + t.h) {
            for (x in t.x until t.x + t.w) {
                val p = px[y * stride + x]
                for (v in intArrayOf((p shr 16) and 0xFF, (p shr 8) and 0xFF, p and 0xFF)) {
                    when (m.inputDtype) {
                        "float32" -> f!![k] = v / 255f
                        "uint8" -> b!![k] = quantize(v / 255f, m.inputScale, m.inputZeroPoint, 0, 255).toByte()
                        else -> b!![k] = quantize(v / 255f, m.inputScale, m.inputZeroPoint, -128, 127).toByte()
                    }
                    k++
                }
            }
        }
    }

    private fun quantize(x: Float, scale: Float, zero: Int, lo: Int, hi: Int): Int =
        (Math.round(x / scale) + zero).coerceIn(lo, hi)

    private fun readOutput(): FloatArray {
        val m = manifest
        if (m.outputDtype == "float32") return outputs[0].readFloat()
        val raw = outputs[0].readInt8()
        return FloatArray(raw.size) { i ->
            if (m.outputDtype == "uint8") ((raw[i].toInt() and 0xFF) - m.outputZeroPoint) * m.outputScale
            else (raw[i].toInt() - m.outputZeroPoint) * m.outputScale
        }
    }

    override fun close() {
        inputs.forEach { it.close() }
        outputs.forEach { it.close() }
        model.close()
        env?.close()
    }

    companion object {
        /** Build.SOC_MODEL (API 31+), read by name: the app compiles against API 23's android.jar. */
        fun socModel(): String? {
            if (Build.VERSION.SDK_INT < 31) return null
            return try {
                Build::class.java.getField("SOC_MODEL").get(null) as? String
            } catch (e: ReflectiveOperationException) {
                null
            }
        }
    }
}
