package dev.srdeploy.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.graphics.Rect
import android.graphics.RectF
import android.util.AttributeSet
import android.view.View

/**
 * Before/after wipe: the left part of the view shows [before] (the input, bicubic-upscaled for
 * display), the right part [after] (the model output), split at [split] (0..1).
 */
class CompareView @JvmOverloads constructor(context: Context, attrs: AttributeSet? = null) : View(context, attrs) {
    var before: Bitmap? = null
        set(value) { field = value; invalidate() }
    var after: Bitmap? = null
        set(value) { field = value; invalidate() }
    var split: Float = 0.5f
        set(value) { field = value.coerceIn(0f, 1f); invalidate() }

    private val paint = Paint(Paint.FILTER_BITMAP_FLAG)
    private val line = Paint().apply { color = Color.WHITE; strokeWidth = 3f }

    override fun onDraw(canvas: Canvas) {
        val img = after ?: before ?: return
        val scale = minOf(width.toFloat() / img.width, height.toFloat() / img.height)
        val dst = RectF(0f, 0f, img.width * scale, img.height * scale)
        val cut = dst.width() * split
        before?.let {
            canvas.save()
            canvas.clipRect(0f, 0f, cut, dst.height())
            canvas.drawBitmap(it, null, dst, paint)
            canvas.restore()
        }
        after?.let {
            canvas.save()
            canvas.clipRect(cut, 0f, dst.width(), dst.height())
            canvas.drawBitmap(it, Rect(0, 0, it.width, it.height), dst, paint)
            canvas.restore()
        }
        if (before != null && after != null) canvas.drawLine(cut, 0f, cut, dst.height(), line)
    }
}
