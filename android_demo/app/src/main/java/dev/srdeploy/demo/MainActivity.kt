package dev.srdeploy.demo

import android.content.ContentValues
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.LinearGradient
import android.graphics.Paint
import android.graphics.Shader
import android.net.Uri
import android.os.Bundle
import android.provider.MediaStore
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
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/**
 * One screen: choose an image (gallery, camera or a generated sample), a backend (CPU/XNNPACK
 * with a thread count, GPU delegate, NNAPI), upscale it tile by tile with the bundled model,
 * see per-tile and total latency, wipe between input and output, and save the result.
 */
class MainActivity : AppCompatActivity() {
    private lateinit var manifest: ModelManifest
    private var input: Bitmap? = null
    private var output: Bitmap? = null

    private val pickImage = registerForActivityResult(ActivityResultContracts.GetContent()) { uri: Uri? ->
        uri?.let { contentResolver.openInputStream(it)?.use { s -> setInput(BitmapFactory.decodeStream(s)) } }
    }
    private val takePicture = registerForActivityResult(ActivityResultContracts.TakePicturePreview()) { bmp ->
        bmp?.let { setInput(it) }
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        manifest = try {
            ModelManifest.load(this)
        } catch (e: Exception) {
            findViewById<TextView>(R.id.modelInfo).text =
                "No usable model bundled (${e.message}). Run: sr-export ... --bundle android_demo"
            return
        }
        findViewById<TextView>(R.id.modelInfo).text = with(manifest) {
            "$model x$scale, $precision, tile ${tileHeight}x$tileWidth (overlap $overlap), I/O $inputDtype -> $outputDtype"
        }
        val spinner = findViewById<Spinner>(R.id.backendSpinner)
        spinner.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, Backend.values().map { it.label })
        val threadsLabel = findViewById<TextView>(R.id.threadsLabel)
        val threadsSeek = findViewById<SeekBar>(R.id.threadsSeek)
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
        val compare = findViewById<CompareView>(R.id.compareView)
        findViewById<SeekBar>(R.id.compareSeek).setOnSeekBarChangeListener(object : SeekBar.OnSeekBarChangeListener {
            override fun onProgressChanged(sb: SeekBar?, p: Int, fromUser: Boolean) { compare.split = p / 1000f }
            override fun onStartTrackingTouch(sb: SeekBar?) {}
            override fun onStopTrackingTouch(sb: SeekBar?) {}
        })
        findViewById<Button>(R.id.pickButton).setOnClickListener { pickImage.launch("image/*") }
        findViewById<Button>(R.id.cameraButton).setOnClickListener { takePicture.launch(null) }
        findViewById<Button>(R.id.sampleButton).setOnClickListener { setInput(sampleImage()) }
        findViewById<Button>(R.id.runButton).setOnClickListener {
            run(Backend.values()[spinner.selectedItemPosition], threads())
        }
        findViewById<Button>(R.id.saveButton).setOnClickListener { save() }
        setInput(sampleImage())
    }

    private fun setInput(bmp: Bitmap) {
        input = bmp.copy(Bitmap.Config.ARGB_8888, false)
        output = null
        findViewById<CompareView>(R.id.compareView).apply { before = input; after = null }
        findViewById<Button>(R.id.saveButton).isEnabled = false
    }

    private fun run(backend: Backend, threads: Int) {
        val src = input ?: return
        val progress = findViewById<ProgressBar>(R.id.progress)
        val timings = findViewById<TextView>(R.id.timings)
        lifecycleScope.launch {
            val result = withContext(Dispatchers.Default) {
                runCatching {
                    SuperResolver(this@MainActivity, manifest, backend, threads).use { sr ->
                        sr.upscale(src) { done, total ->
                            runOnUiThread { progress.max = total; progress.progress = done }
                        }
                    }
                }
            }
            result.onSuccess { (bmp, stats) ->
                output = bmp
                val scaled = Bitmap.createScaledBitmap(src, bmp.width, bmp.height, true)
                findViewById<CompareView>(R.id.compareView).apply { before = scaled; after = bmp }
                findViewById<Button>(R.id.saveButton).isEnabled = true
                val t = stats.tileMs
                timings.text = buildString {
                    append("${stats.backend}: ${src.width}x${src.height} -> ${bmp.width}x${bmp.height}\n")
                    append("total %.1f ms, %d tiles: mean %.1f, min %.1f, max %.1f ms (first %.1f ms)".format(
                        stats.totalMs, t.size, t.average(), t.minOrNull() ?: 0.0, t.maxOrNull() ?: 0.0, t.first()))
                }
            }.onFailure { e -> timings.text = "Failed on ${backend.label}: ${e.message}" }
        }
    }

    private fun save() {
        val bmp = output ?: return
        val values = ContentValues().apply {
            put(MediaStore.Images.Media.DISPLAY_NAME, "sr_${System.currentTimeMillis()}.png")
            put(MediaStore.Images.Media.MIME_TYPE, "image/png")
        }
        val uri = contentResolver.insert(MediaStore.Images.Media.EXTERNAL_CONTENT_URI, values) ?: return
        contentResolver.openOutputStream(uri)?.use { bmp.compress(Bitmap.CompressFormat.PNG, 100, it) }
        Toast.makeText(this, "Saved", Toast.LENGTH_SHORT).show()
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
