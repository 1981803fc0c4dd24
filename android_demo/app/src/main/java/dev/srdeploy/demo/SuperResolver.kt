package dev.srdeploy.demo

import android.content.Context
import android.graphics.Bitmap
import android.os.SystemClock
import dev.srdeploy.tiling.Tiler
import java.io.Closeable
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import org.tensorflow.lite.Delegate
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.nnapi.NnApiDelegate

enum class Backend(val label: String) { CPU("CPU (XNNPACK)"), GPU("GPU delegate"), NNAPI("NNAPI") }

/** Per-run timings, in milliseconds. */
data class RunStats(val tileMs: List<Double>, val totalMs: Double, val backend: String)

/**
 * Runs the bundled fixed-shape SR model over a bitmap of any size, tile by tile, with the same
 * tile plan and blending as `sr-upscale` (the shared [Tiler]).
 */
class SuperResolver(context: Context, val manifest: ModelManifest, backend: Backend, threads: Int) : Closeable {
    private val delegate: Delegate?
    private val interpreter: Interpreter
    val backendUsed: String

    init {
        val options = Interpreter.Options()
        var used = backend.label
        delegate = when (backend) {
            Backend.CPU -> {
                options.setNumThreads(threads)
                used = "CPU (XNNPACK, $threads threads)"
                null
            }
            Backend.GPU -> {
                val compat = CompatibilityList()
                require(compat.isDelegateSupportedOnThisDevice) { "the GPU delegate is not supported on this device" }
                GpuDelegate(compat.bestOptionsForThisDevice)
            }
            Backend.NNAPI -> NnApiDelegate()
        }
        delegate?.let { options.addDelegate(it) }
        interpreter = Interpreter(loadModel(context, "${ModelManifest.ASSET_DIR}/${manifest.file}"), options)
        backendUsed = used
    }

    private fun loadModel(context: Context, asset: String): MappedByteBuffer {
        context.assets.openFd(asset).use { fd ->
            FileInputStream(fd.fileDescriptor).channel.use { ch ->
                return ch.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
            }
        }
    }

    /** Upscales [src]; [onTile] reports progress (done, total). */
    fun upscale(src: Bitmap, onTile: (Int, Int) -> Unit = { _, _ -> }): Pair<Bitmap, RunStats> {
        val m = manifest
        val s = m.scale
        // Images smaller than one tile are padded (mirrored) up to it, as the Python tiler does.
        val h = maxOf(src.height, m.tileHeight)
        val w = maxOf(src.width, m.tileWidth)
        val pixels = mirrorPad(src, h, w)
        val tiles = Tiler.planTiles(h, w, m.tileHeight, m.tileWidth, m.overlap)
        val blender = Tiler.Blender(h, w, s, m.overlap)
        val input = ByteBuffer.allocateDirect(m.tileHeight * m.tileWidth * 3 * bytesPer(m.inputDtype))
            .order(ByteOrder.nativeOrder())
        val outH = m.tileHeight * s
        val outW = m.tileWidth * s
        val output = ByteBuffer.allocateDirect(outH * outW * 3 * bytesPer(m.outputDtype)).order(ByteOrder.nativeOrder())
        val tileMs = ArrayList<Double>(tiles.size)
        val t0 = SystemClock.elapsedRealtimeNanos()
        tiles.forEachIndexed { i, t ->
            fillInput(input, pixels, w, t)
            output.rewind()
            val ts = SystemClock.elapsedRealtimeNanos()
            interpreter.run(input, output)
            tileMs += (SystemClock.elapsedRealtimeNanos() - ts) / 1e6
            blender.add(t, readOutput(output, outH * outW * 3))
            onTile(i + 1, tiles.size)
        }
        val totalMs = (SystemClock.elapsedRealtimeNanos() - t0) / 1e6
        val rgb = blender.result()
        val outBitmap = toBitmap(rgb, w * s, src.width * s, src.height * s)
        return outBitmap to RunStats(tileMs, totalMs, backendUsed)
    }

    private fun bytesPer(dtype: String) = if (dtype == "float32") 4 else 1

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

    private fun fillInput(buf: ByteBuffer, px: IntArray, stride: Int, t: Tiler.Tile) {
        val m = manifest
        buf.rewind()
        for (y in t.y until t.y + t.h) {
            for (x in t.x until t.x + t.w) {
                val p = px[y * stride + x]
                for (v in intArrayOf((p shr 16) and 0xFF, (p shr 8) and 0xFF, p and 0xFF)) {
                    when (m.inputDtype) {
                        "float32" -> buf.putFloat(v / 255f)
                        "uint8" -> buf.put(quantize(v / 255f, m.inputScale, m.inputZeroPoint, 0, 255).toByte())
                        else -> buf.put(quantize(v / 255f, m.inputScale, m.inputZeroPoint, -128, 127).toByte())
                    }
                }
            }
        }
        buf.rewind()
    }

    private fun quantize(x: Float, scale: Float, zero: Int, lo: Int, hi: Int): Int =
        (Math.round(x / scale) + zero).coerceIn(lo, hi)

    private fun readOutput(buf: ByteBuffer, n: Int): FloatArray {
        val m = manifest
        buf.rewind()
        return FloatArray(n) {
            when (m.outputDtype) {
                "float32" -> buf.float
                "uint8" -> ((buf.get().toInt() and 0xFF) - m.outputZeroPoint) * m.outputScale
                else -> (buf.get().toInt() - m.outputZeroPoint) * m.outputScale
            }
        }
    }

    private fun toBitmap(rgb: FloatArray, stride: Int, width: Int, height: Int): Bitmap {
        val px = IntArray(width * height)
        for (y in 0 until height) for (x in 0 until width) {
            val i = (y * stride + x) * 3
            fun c(v: Float) = Math.round(v.coerceIn(0f, 1f) * 255f)
            px[y * width + x] = (0xFF shl 24) or (c(rgb[i]) shl 16) or (c(rgb[i + 1]) shl 8) or c(rgb[i + 2])
        }
        return Bitmap.createBitmap(px, width, height, Bitmap.Config.ARGB_8888)
    }

    override fun close() {
        interpreter.close()
        (delegate as? Closeable)?.close()
    }
}
