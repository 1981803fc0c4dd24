package dev.srdeploy.demo

import android.content.ContentValues
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.LinearGradient
import android.graphics.Paint
import android.graphics.Shader
import android.net.Uri
import android.os.Build
import android.os.Bundle
import android.os.SystemClock
import android.provider.MediaStore
import android.view.View
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.ProgressBar
import android.widget.SeekBar
import android.widget.Spinner
import android.widget.TextView
import android.widget.Toast
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.lifecycle.lifecycleScope
import dev.srdeploy.tiling.BenchReport
import java.io.File
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/**
 * One screen: choose an image (gallery, camera or a generated sample), an accelerator (the bundle's
 * order NPU -> GPU -> CPU, or one of them; CPU with a thread count), upscale it tile by tile with the
 * bundled model, see which accelerator ran, per-tile and total latency, wipe between input and
 * output, save the result, and benchmark every accelerator into bench.json (sr-bench's shape).
 */
class MainActivity : AppCompatActivity() {
    companion object {
        const val MAX_INPUT_PIXELS = 12_000_000L
        const val BENCH_RUNS = 10
        /** the LiteRT version app/build.gradle.kts depends on (for the benchmark's JSON) */
        const val LITERT_VERSION = "2.2.0"
        /** sr-bench's name for each accelerator */
        val DELEGATE = mapOf(Accel.CPU to "xnnpack", Accel.GPU to "gpu", Accel.NPU to "npu")
    }

    private lateinit var manifest: ModelManifest
    private var input: Bitmap? = null
    private var output: Bitmap? = null

    private val pickImage = registerForActivityResult(ActivityResultContracts.GetContent()) { uri: Uri? ->
        uri?.let { decode(it)?.let { bmp -> setInput(bmp) } }
    }
    /** Android 7-9: the gallery insert needs WRITE_EXTERNAL_STORAGE granted at run time. */
    private val askWrite = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) save() else toast("Not saved: storage permission denied")
    }
    private val takePicture = registerForActivityResult(ActivityResultContracts.TakePicturePreview()) { bmp ->
        bmp?.let { setInput(it) }
    }

    /**
     * findViewById with a checked cast. Not the generic `findViewById<T>`: that form is API 26's, and
     * the app also compiles against API 23's android.jar (android_demo/compile_check.sh), whose
     * findViewById returns View.
     */
    private inline fun <reified T : View> view(id: Int): T {
        val v: View = findViewById(id) ?: throw IllegalStateException("no view ${resources.getResourceEntryName(id)} in the layout")
        return v as? T ?: throw IllegalStateException("view ${resources.getResourceEntryName(id)} is a ${v.javaClass.simpleName}, not a ${T::class.java.simpleName}")
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        manifest = try {
            ModelManifest.load(this)
        } catch (e: Exception) {
            view<TextView>(R.id.modelInfo).text =
                "No usable model bundled (${e.message}). Run: sr-bundle EXPORT_DIR --app android_demo"
            return
        }
        view<TextView>(R.id.modelInfo).text = with(manifest) {
            "$model x$scale, $precision, tile ${tileHeight}x$tileWidth (overlap $overlap), I/O $inputDtype -> $outputDtype, " +
                "tries ${accelerators.joinToString(" -> ") { it.key }}" +
                (if (compiled.isEmpty()) "" else ", NPU models for ${compiled.keys.joinToString()}")
        }
        val spinner = view<Spinner>(R.id.backendSpinner)
        spinner.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, Backend.values().map { it.label })
        val threadsLabel = view<TextView>(R.id.threadsLabel)
        val threadsSeek = view<SeekBar>(R.id.threadsSeek)
        fun threads() = threadsSeek.progress + 1
        threadsSeek.progress = 1
        threadsLabel.text = getString(R.string.threads, threads())
        threadsSeek.setOnSeekBarChangeListener(object : SeekBar.OnSeekBarChangeListener {
            override fun onProgressChanged(sb: SeekBar?, p: Int, fromUser: Boolean) {
                threadsLabel.text = getString(R.string.threads, threads())
            }
            override fun onStartTrackingTouch(sb: SeekBar?) {}
            override fun onStopTrackingTouch(sb: SeekBar?) {}
        })
        val compare = view<CompareView>(R.id.compareView)
        view<SeekBar>(R.id.compareSeek).setOnSeekBarChangeListener(object : SeekBar.OnSeekBarChangeListener {
            override fun onProgressChanged(sb: SeekBar?, p: Int, fromUser: Boolean) { compare.split = p / 1000f }
            override fun onStartTrackingTouch(sb: SeekBar?) {}
            override fun onStopTrackingTouch(sb: SeekBar?) {}
        })
        view<Button>(R.id.pickButton).setOnClickListener { pickImage.launch("image/*") }
        view<Button>(R.id.cameraButton).setOnClickListener { takePicture.launch(null) }
        view<Button>(R.id.sampleButton).setOnClickListener { setInput(sampleImage()) }
        view<Button>(R.id.runButton).setOnClickListener {
            run(Backend.values()[spinner.selectedItemPosition], threads())
        }
        view<Button>(R.id.saveButton).setOnClickListener { save() }
        view<Button>(R.id.benchButton).setOnClickListener { benchmark(threads()) }
        setInput(sampleImage())
    }

    /** The picked file as a bitmap, or null with a message: not an image, or too large to upscale here. */
    private fun decode(uri: Uri): Bitmap? {
        return try {
            val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
            contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it, null, bounds) }
            val px = bounds.outWidth.toLong() * bounds.outHeight
            when {
                bounds.outWidth <= 0 || bounds.outHeight <= 0 -> { toast("Not an image this phone can decode"); null }
                px > MAX_INPUT_PIXELS -> { toast("Image too large (${bounds.outWidth}x${bounds.outHeight}; at most 12 MP)"); null }
                else -> contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it) }
                    ?: run { toast("Not an image this phone can decode"); null }
            }
        } catch (e: Exception) {  // a provider that fails, a file that vanished
            toast("Could not read the image: ${e.message}")
            null
        } catch (e: OutOfMemoryError) {
            toast("Image too large for this phone's memory")
            null
        }
    }

    private fun toast(msg: String) = Toast.makeText(this, msg, Toast.LENGTH_LONG).show()

    private fun setInput(bmp: Bitmap) {
        input = bmp.copy(Bitmap.Config.ARGB_8888, false)
        output = null
        view<CompareView>(R.id.compareView).apply { before = input; after = null }
        view<Button>(R.id.saveButton).isEnabled = false
    }

    private fun run(backend: Backend, threads: Int) {
        val src = input ?: return
        val progress = view<ProgressBar>(R.id.progress)
        val timings = view<TextView>(R.id.timings)
        var skipped: String? = null
        lifecycleScope.launch {
            val result = withContext(Dispatchers.Default) {
                runCatching {
                    SuperResolver(this@MainActivity, manifest, backend, threads).use { sr ->
                        skipped = sr.attempts.takeIf { it.isNotEmpty() }?.joinToString("; ")
                        sr.upscale(src) { done, total ->
                            runOnUiThread { progress.max = total; progress.progress = done }
                        }
                    }
                }
            }
            result.onSuccess { (bmp, stats) ->
                output = bmp
                val scaled = Bitmap.createScaledBitmap(src, bmp.width, bmp.height, true)
                view<CompareView>(R.id.compareView).apply { before = scaled; after = bmp }
                view<Button>(R.id.saveButton).isEnabled = true
                val t = stats.tileMs
                timings.text = buildString {
                    append("${stats.backend}: ${src.width}x${src.height} -> ${bmp.width}x${bmp.height}\n")
                    skipped?.let { append("not used: $it\n") }
                    append("total %.1f ms, %d tiles: mean %.1f, min %.1f, max %.1f ms (first %.1f ms)".format(
                        stats.totalMs, t.size, t.average(), t.minOrNull() ?: 0.0, t.maxOrNull() ?: 0.0, t.first()))
                }
            }.onFailure { e -> timings.text = "Failed on ${backend.label}: ${e.message}" }
        }
    }

    private fun save() {
        val bmp = output ?: return
        val perm = "android.permission.WRITE_EXTERNAL_STORAGE"
        if (Build.VERSION.SDK_INT <= 28 && checkSelfPermission(perm) != PackageManager.PERMISSION_GRANTED) {
            askWrite.launch(perm)  // comes back to save() when granted
            return
        }
        try {
            val values = ContentValues().apply {
                put(MediaStore.Images.Media.DISPLAY_NAME, "sr_${System.currentTimeMillis()}.png")
                put(MediaStore.Images.Media.MIME_TYPE, "image/png")
            }
            val uri = contentResolver.insert(MediaStore.Images.Media.EXTERNAL_CONTENT_URI, values)
                ?: throw IllegalStateException("the gallery refused the new image")
            contentResolver.openOutputStream(uri)?.use { bmp.compress(Bitmap.CompressFormat.PNG, 100, it) }
            toast("Saved")
        } catch (e: Exception) {  // SecurityException, a full disk: a message, not a crash
            toast("Not saved: ${e.message}")
        }
    }

    /**
     * Times one tile on every accelerator the bundle lists (first inference, then [BENCH_RUNS] runs)
     * and writes the figures in `sr-bench --json`'s shape to the app's files folder, for
     * `adb pull` and `sr-bench --compare phone.json host.json`.
     */
    private fun benchmark(threads: Int) {
        val timings = view<TextView>(R.id.timings)
        timings.text = "Benchmarking ${manifest.accelerators.joinToString(" / ") { it.key }}..."
        lifecycleScope.launch {
            val text = withContext(Dispatchers.Default) {
                val soc = SuperResolver.socModel() ?: Build.HARDWARE
                val report = BenchReport(soc, Runtime.getRuntime().availableProcessors(),
                    "Android ${Build.VERSION.RELEASE} (API ${Build.VERSION.SDK_INT}), ${Build.MODEL}", LITERT_VERSION)
                val tile = Bitmap.createBitmap(manifest.tileWidth, manifest.tileHeight, Bitmap.Config.ARGB_8888)
                val lines = ArrayList<String>()
                for (accel in manifest.accelerators) {
                    val backend = Backend.valueOf(accel.name)
                    val t0 = SystemClock.elapsedRealtimeNanos()
                    try {
                        SuperResolver(this@MainActivity, manifest, backend, threads).use { sr ->
                            val initMs = (SystemClock.elapsedRealtimeNanos() - t0) / 1e6
                            val first = sr.upscale(tile).second.totalMs
                            val times = DoubleArray(BENCH_RUNS) { sr.upscale(tile).second.totalMs }
                            val file = if (accel == Accel.NPU) sr.backendUsed.substringAfter(", ").trimEnd(')') else manifest.file
                            report.add(file, manifest.tileHeight, manifest.tileWidth, threads, DELEGATE.getValue(accel),
                                initMs, first, times, manifest.inputDtype, manifest.outputDtype, null)
                            lines += "${sr.backendUsed}: median %.1f ms".format(times.sorted()[times.size / 2])
                        }
                    } catch (e: Exception) {
                        report.add(manifest.file, manifest.tileHeight, manifest.tileWidth, threads, DELEGATE.getValue(accel),
                            0.0, 0.0, DoubleArray(0), manifest.inputDtype, manifest.outputDtype, e.message ?: e.toString())
                        lines += "${accel.key}: ${e.message}"
                    }
                }
                val out = File(getExternalFilesDir(null) ?: filesDir, "bench.json")
                val tmp = File(out.path + ".partial")
                tmp.writeText(report.toJson())
                if (!tmp.renameTo(out)) throw IllegalStateException("could not write $out")
                lines += "wrote $out"
                lines.joinToString("\n")
            }
            timings.text = text
        }
    }

    /** A generated test picture (gradients, edges, fine stripes), so no image file ships in the app. */
    private fun sampleImage(): Bitmap {
        val bmp = Bitmap.createBitmap(320, 240, Bitmap.Config.ARGB_8888)
        val c = Canvas(bmp)
        val p = Paint(Paint.ANTI_ALIAS_FLAG)
        p.shader = LinearGradient(0f, 0f, 320f, 240f, Color.rgb(30, 90, 160), Color.rgb(230, 180, 60), Shader.TileMode.CLAMP)
        c.drawRect(0f, 0f, 320f, 240f, p)
        p.shader = null
        p.color = Color.WHITE
        for (i in 0 until 20) c.drawLine(10f + i * 4f, 150f, 10f + i * 4f, 230f, p)
        p.color = Color.BLACK
        p.textSize = 36f
        c.drawText("srdeploy", 120f, 80f, p)
        c.drawCircle(240f, 170f, 40f, p.apply { style = Paint.Style.STROKE; strokeWidth = 3f })
        return bmp
    }
}
