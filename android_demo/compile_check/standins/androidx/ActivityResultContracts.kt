// Compile-check stand-in, signatures only (no behaviour: every body throws); never packaged.
// android_demo/compile_check.sh compiles it into a throwaway jar that the app is type-checked
// against, because the real AndroidX / kotlinx .aar and .jar files (Google Maven, Maven Central)
// cannot be reached from the machines this project runs on.
//
// Signatures: androidx.activity:activity 1.9.1's ActivityResultContract and the three
// ActivityResultContracts the app uses, with their published input/output types
// (developer.android.com/reference/kotlin/androidx/activity/result/contract/ActivityResultContracts):
// GetContent <String, Uri?>, RequestPermission <String, Boolean>, TakePicturePreview <Void?, Bitmap?>.
@file:Suppress("UNUSED_PARAMETER", "unused")

package androidx.activity.result.contract

import android.content.Context
import android.content.Intent
import android.graphics.Bitmap
import android.net.Uri

private fun standIn(): Nothing = throw UnsupportedOperationException("compile-check stand-in")

abstract class ActivityResultContract<I, O> {
    abstract fun createIntent(context: Context, input: I): Intent
    abstract fun parseResult(resultCode: Int, intent: Intent?): O
}

class ActivityResultContracts private constructor() {
    open class GetContent : ActivityResultContract<String, Uri?>() {
        override fun createIntent(context: Context, input: String): Intent = standIn()
        final override fun parseResult(resultCode: Int, intent: Intent?): Uri? = standIn()
    }

    class RequestPermission : ActivityResultContract<String, Boolean>() {
        override fun createIntent(context: Context, input: String): Intent = standIn()
        override fun parseResult(resultCode: Int, intent: Intent?): Boolean = standIn()
    }

    open class TakePicturePreview : ActivityResultContract<Void?, Bitmap?>() {
        override fun createIntent(context: Context, input: Void?): Intent = standIn()
        final override fun parseResult(resultCode: Int, intent: Intent?): Bitmap? = standIn()
    }
}
