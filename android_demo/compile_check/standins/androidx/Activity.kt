// Compile-check stand-in, signatures only (no behaviour: every body throws); never packaged.
// android_demo/compile_check.sh compiles it into a throwaway jar that the app is type-checked
// against, because the real AndroidX / kotlinx .aar and .jar files (Google Maven, Maven Central)
// cannot be reached from the machines this project runs on.
//
// Signatures: androidx.activity:activity(-ktx) 1.9.1, the version app/build.gradle.kts depends on,
// as its public API is published (developer.android.com/reference/kotlin/androidx/activity/
// ComponentActivity, the androidx repository's activity/activity/api/current.txt). Only the
// members the app calls. Left out: the class chain between Activity and ComponentActivity
// (androidx.core.app.ComponentActivity), the registry overload of registerForActivityResult,
// ActivityOptionsCompat launches.
@file:Suppress("UNUSED_PARAMETER", "unused")

package androidx.activity

import androidx.activity.result.ActivityResultCallback
import androidx.activity.result.ActivityResultCaller
import androidx.activity.result.ActivityResultLauncher
import androidx.activity.result.contract.ActivityResultContract
import androidx.lifecycle.Lifecycle
import androidx.lifecycle.LifecycleOwner

internal fun standIn(): Nothing = throw UnsupportedOperationException("compile-check stand-in")

open class ComponentActivity : android.app.Activity(), LifecycleOwner, ActivityResultCaller {
    override val lifecycle: Lifecycle get() = standIn()

    final override fun <I, O> registerForActivityResult(
        contract: ActivityResultContract<I, O>,
        callback: ActivityResultCallback<O>,
    ): ActivityResultLauncher<I> = standIn()
}
