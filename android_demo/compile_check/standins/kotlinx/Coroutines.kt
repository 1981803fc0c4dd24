// Compile-check stand-in, signatures only (no behaviour: every body throws); never packaged.
// android_demo/compile_check.sh compiles it into a throwaway jar that the app is type-checked
// against, because the real AndroidX / kotlinx .aar and .jar files (Google Maven, Maven Central)
// cannot be reached from the machines this project runs on.
//
// Signatures: org.jetbrains.kotlinx:kotlinx-coroutines-core 1.8.1 (kotlinlang.org/api/kotlinx.coroutines/
// kotlinx-coroutines-core/kotlinx.coroutines/): CoroutineScope, Job (a subset), CoroutineStart,
// CoroutineDispatcher, MainCoroutineDispatcher, Dispatchers, launch and withContext.
@file:Suppress("UNUSED_PARAMETER", "unused")

package kotlinx.coroutines

import kotlin.coroutines.AbstractCoroutineContextElement
import kotlin.coroutines.Continuation
import kotlin.coroutines.ContinuationInterceptor
import kotlin.coroutines.CoroutineContext
import kotlin.coroutines.EmptyCoroutineContext

private fun standIn(): Nothing = throw UnsupportedOperationException("compile-check stand-in")

interface CoroutineScope {
    val coroutineContext: CoroutineContext
}

interface Job : CoroutineContext.Element {
    val isActive: Boolean
    fun cancel(cause: CancellationException? = null)
    suspend fun join()
}

typealias CancellationException = java.util.concurrent.CancellationException

enum class CoroutineStart { DEFAULT, LAZY, ATOMIC, UNDISPATCHED }

abstract class CoroutineDispatcher : AbstractCoroutineContextElement(ContinuationInterceptor), ContinuationInterceptor {
    abstract fun dispatch(context: CoroutineContext, block: Runnable)
    final override fun <T> interceptContinuation(continuation: Continuation<T>): Continuation<T> = standIn()
}

abstract class MainCoroutineDispatcher : CoroutineDispatcher() {
    abstract val immediate: MainCoroutineDispatcher
}

object Dispatchers {
    @JvmStatic val Default: CoroutineDispatcher get() = standIn()
    @JvmStatic val Main: MainCoroutineDispatcher get() = standIn()
    @JvmStatic val Unconfined: CoroutineDispatcher get() = standIn()
    @JvmStatic val IO: CoroutineDispatcher get() = standIn()
}

fun CoroutineScope.launch(
    context: CoroutineContext = EmptyCoroutineContext,
    start: CoroutineStart = CoroutineStart.DEFAULT,
    block: suspend CoroutineScope.() -> Unit,
): Job = standIn()

suspend fun <T> withContext(context: CoroutineContext, block: suspend CoroutineScope.() -> T): T = standIn()
