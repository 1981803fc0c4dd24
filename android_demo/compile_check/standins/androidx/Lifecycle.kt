// Compile-check stand-in, signatures only (no behaviour: every body throws); never packaged.
// android_demo/compile_check.sh compiles it into a throwaway jar that the app is type-checked
// against, because the real AndroidX / kotlinx .aar and .jar files (Google Maven, Maven Central)
// cannot be reached from the machines this project runs on.
//
// Signatures: androidx.lifecycle 2.8.4 (lifecycle-common / lifecycle-runtime(-ktx), published API at
// developer.android.com/reference/kotlin/androidx/lifecycle/package-summary): LifecycleOwner,
// Lifecycle (a subset), LifecycleCoroutineScope and the LifecycleOwner.lifecycleScope extension.
@file:Suppress("unused")

package androidx.lifecycle

import kotlinx.coroutines.CoroutineScope

private fun standIn(): Nothing = throw UnsupportedOperationException("compile-check stand-in")

abstract class Lifecycle {
    enum class State { DESTROYED, INITIALIZED, CREATED, STARTED, RESUMED }

    abstract val currentState: State
}

interface LifecycleOwner {
    val lifecycle: Lifecycle
}

abstract class LifecycleCoroutineScope internal constructor() : CoroutineScope

val LifecycleOwner.lifecycleScope: LifecycleCoroutineScope
    get() = standIn()
