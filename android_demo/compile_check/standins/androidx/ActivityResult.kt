// Compile-check stand-in, signatures only (no behaviour: every body throws); never packaged.
// android_demo/compile_check.sh compiles it into a throwaway jar that the app is type-checked
// against, because the real AndroidX / kotlinx .aar and .jar files (Google Maven, Maven Central)
// cannot be reached from the machines this project runs on.
//
// Signatures: androidx.activity:activity 1.9.1's package androidx.activity.result (published API,
// developer.android.com/reference/kotlin/androidx/activity/result/package-summary).
@file:Suppress("UNUSED_PARAMETER", "unused")

package androidx.activity.result

import androidx.activity.result.contract.ActivityResultContract

fun interface ActivityResultCallback<O> {
    fun onActivityResult(result: O)
}

interface ActivityResultCaller {
    fun <I, O> registerForActivityResult(contract: ActivityResultContract<I, O>, callback: ActivityResultCallback<O>): ActivityResultLauncher<I>
}

abstract class ActivityResultLauncher<I> {
    open fun launch(input: I): Unit = throw UnsupportedOperationException("compile-check stand-in")
    abstract fun unregister()
    abstract val contract: ActivityResultContract<I, *>
}
