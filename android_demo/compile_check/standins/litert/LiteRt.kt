// Compile-check stand-in for LiteRT 2.2.0's Kotlin API (com.google.ai.edge.litert:litert:2.2.0).
//
// Signatures only, no behaviour: every body throws. They were written from the public declarations
// of github.com/google-ai-edge/LiteRT at tag v2.2.0, files
// litert/kotlin/src/main/kotlin/com/google/ai/edge/litert/{Common,Model,Environment,TensorBuffer,
// AcceleratorProvider,LiteRtException}.kt: the classes the demo app uses, each with its public
// members (names, parameter types, defaults, nullability, @Throws). Internal and private members,
// TensorBufferRequirements, TensorType, QualcommOptions, the option maps' keys and Status codes
// past ErrorCompilation (504) are left out.
// This file is never packaged: android_demo/compile_check.sh compiles it into a throwaway jar that
// the app's Kotlin is type-checked against, where the real .aar (Google Maven) is unreachable.
@file:Suppress("UNUSED_PARAMETER", "unused")

package com.google.ai.edge.litert

import android.content.Context
import android.content.res.AssetManager

internal fun standIn(): Nothing = throw UnsupportedOperationException("compile-check stand-in")

// --- Common.kt ---
enum class Accelerator(val value: Int) { NONE(0), CPU(1), GPU(2), NPU(3) }

abstract class JniHandle internal constructor(internal val handle: Long) : AutoCloseable {
    protected fun assertNotDestroyed(): Unit = standIn()
    protected abstract fun destroy()
    final override fun close(): Unit = standIn()
}

// --- LiteRtException.kt ---
enum class Status(val code: Int) {
    Ok(0), ErrorInvalidArgument(1), ErrorMemoryAllocationFailure(2), ErrorRuntimeFailure(3),
    ErrorMissingInputTensor(4), ErrorUnsupported(5), ErrorNotFound(6), ErrorTimeoutExpired(7),
    ErrorWrongVersion(8), ErrorUnknown(9), ErrorAlreadyExists(10), ErrorCancelled(11),
    ErrorFileIO(500), ErrorInvalidFlatbuffer(501), ErrorDynamicLoading(502), ErrorSerialization(503),
    ErrorCompilation(504);

    companion object {
        fun fromCode(code: Int): Status = standIn()
    }
}

class LiteRtException(private val status: Status, message: String) : Exception(message) {
    constructor(code: Int, message: String) : this(Status.fromCode(code), message)
}

// --- Environment.kt ---
class Environment private constructor(handle: Long) : JniHandle(handle) {
    enum class Option(val value: Int) { CompilerPluginLibraryDir(0), DispatchLibraryDir(1), SystemRuntimeHandle(23) }

    override fun destroy(): Unit = standIn()

    @Throws(LiteRtException::class)
    fun getAvailableAccelerators(): Set<Accelerator> = standIn()

    companion object {
        @Throws(LiteRtException::class) @JvmOverloads @JvmStatic
        fun create(context: Context, options: Map<Option, String> = mapOf(), enableCompilerCache: Boolean = true): Environment = standIn()

        @Throws(LiteRtException::class) @JvmOverloads @JvmStatic
        fun create(options: Map<Option, String> = mapOf()): Environment = standIn()

        @Throws(LiteRtException::class) @JvmOverloads @JvmStatic
        fun create(context: Context, npuAcceleratorProvider: NpuAcceleratorProvider, options: Map<Option, String> = mapOf(),
                   enableCompilerCache: Boolean = true): Environment = standIn()

        @Throws(LiteRtException::class) @JvmOverloads @JvmStatic
        fun create(npuAcceleratorProvider: NpuAcceleratorProvider, options: Map<Option, String> = mapOf()): Environment = standIn()
    }
}

// --- AcceleratorProvider.kt ---
interface NpuCompatibilityChecker {
    fun isDeviceSupported(): Boolean

    companion object {
        val Qualcomm: NpuCompatibilityChecker get() = standIn()
        val Mediatek: NpuCompatibilityChecker get() = standIn()
        val GoogleTensor: NpuCompatibilityChecker get() = standIn()
        val Default: NpuCompatibilityChecker get() = standIn()
    }
}

interface NpuAcceleratorProvider {
    fun isDeviceSupported(): Boolean
    fun isLibraryReady(): Boolean
    suspend fun downloadLibrary()
    fun getLibraryDir(): String
}

class BuiltinNpuAcceleratorProvider @JvmOverloads constructor(
    private val context: Context,
    private val npuCompatibilityChecker: NpuCompatibilityChecker = NpuCompatibilityChecker.Default,
) : NpuAcceleratorProvider {
    override fun isDeviceSupported(): Boolean = standIn()
    override fun isLibraryReady(): Boolean = standIn()
    override suspend fun downloadLibrary(): Unit = standIn()
    override fun getLibraryDir(): String = standIn()
}

// --- TensorBuffer.kt ---
class TensorBuffer internal constructor(handle: Long) : JniHandle(handle) {
    @Throws(LiteRtException::class) fun writeInt(data: IntArray): Unit = standIn()
    @Throws(LiteRtException::class) fun writeFloat(data: FloatArray): Unit = standIn()
    @Throws(LiteRtException::class) fun writeInt8(data: ByteArray): Unit = standIn()
    @Throws(LiteRtException::class) fun writeBoolean(data: BooleanArray): Unit = standIn()
    @Throws(LiteRtException::class) fun writeLong(data: LongArray): Unit = standIn()
    @Throws(LiteRtException::class) fun readInt(): IntArray = standIn()
    @Throws(LiteRtException::class) fun readFloat(): FloatArray = standIn()
    @Throws(LiteRtException::class) fun readInt8(): ByteArray = standIn()
    @Throws(LiteRtException::class) fun readBoolean(): BooleanArray = standIn()
    @Throws(LiteRtException::class) fun readLong(): LongArray = standIn()
    override fun destroy(): Unit = standIn()
}

// --- Model.kt ---
class CompiledModel private constructor(handle: Long) : JniHandle(handle) {
    data class CpuOptions(val numThreads: Int? = null, val xnnPackFlags: Int? = null, val xnnPackWeightCachePath: String? = null)

    data class GpuOptions(
        val constantTensorSharing: Boolean? = null,
        val infiniteFloatCapping: Boolean? = null,
        val allowSrcQuantizedFcConvOps: Boolean? = null,
        val precision: Precision? = null,
        val bufferStorageType: BufferStorageType? = null,
        val preferTextureWeights: Boolean? = null,
        val serializationDir: String? = null,
        val modelCacheKey: String? = null,
        val serializeProgramCache: Boolean? = null,
        val serializeExternalTensors: Boolean? = null,
        val externalTensorsMode: Boolean? = null,
        val externalTensorPattern: String? = null,
        val backend: Backend? = null,
        val priority: Priority? = null,
        val numStepsOfCommandBufferPreparations: Int? = null,
    ) {
        enum class Precision(val value: Int) { DEFAULT(0), FP16(1), FP32(2), FP16_WITH_FP32_ACCUM(3) }
        enum class BufferStorageType(val value: Int) { DEFAULT(0), BUFFER(1), TEXTURE_2D(2) }
        enum class Backend(val value: Int) { AUTOMATIC(0), OPENCL(1), @Deprecated("Use AUTOMATIC instead.") WEBGPU(2), OPENGL(3) }
        enum class Priority(val value: Int) { DEFAULT(0), LOW(1), NORMAL(2), HIGH(3) }
    }

    class Options(internal val accelerators: Set<Accelerator>) {
        constructor(vararg accelerators: Accelerator) : this(setOf(*accelerators))

        var cpuOptions: CpuOptions? = null
        var gpuOptions: GpuOptions? = null

        companion object {
            @JvmStatic val CPU: Options get() = standIn()
        }
    }

    @Throws(LiteRtException::class)
    fun createInputBuffer(inputName: String, signature: String = ""): TensorBuffer = standIn()

    @Throws(LiteRtException::class)
    fun createOutputBuffer(outputName: String, signature: String = ""): TensorBuffer = standIn()

    @Throws(LiteRtException::class) @JvmOverloads
    fun createInputBuffers(signatureIndex: Int = 0): List<TensorBuffer> = standIn()

    @Throws(LiteRtException::class)
    fun createInputBuffers(signature: String): List<TensorBuffer> = standIn()

    @Throws(LiteRtException::class) @JvmOverloads
    fun createOutputBuffers(signatureIndex: Int = 0): List<TensorBuffer> = standIn()

    @Throws(LiteRtException::class)
    fun createOutputBuffers(signature: String): List<TensorBuffer> = standIn()

    @Throws(LiteRtException::class) @JvmOverloads
    fun run(inputs: List<TensorBuffer>, signatureIndex: Int = 0): List<TensorBuffer> = standIn()

    @Throws(LiteRtException::class)
    fun run(inputs: List<TensorBuffer>, signature: String): List<TensorBuffer> = standIn()

    @Throws(LiteRtException::class) @JvmOverloads
    fun run(inputs: List<TensorBuffer>, outputs: List<TensorBuffer>, signatureIndex: Int = 0): Unit = standIn()

    @Throws(LiteRtException::class)
    fun run(inputs: List<TensorBuffer>, outputs: List<TensorBuffer>, signature: String): Unit = standIn()

    @Throws(LiteRtException::class)
    fun run(inputs: Map<String, TensorBuffer>, outputs: Map<String, TensorBuffer>, signature: String = ""): Unit = standIn()

    override fun destroy(): Unit = standIn()

    companion object {
        @Throws(LiteRtException::class) @JvmOverloads @JvmStatic
        fun create(assetManager: AssetManager, assetName: String, options: Options = Options.CPU,
                   optionalEnv: Environment? = null): CompiledModel = standIn()

        @Throws(LiteRtException::class) @JvmOverloads @JvmStatic
        fun create(filePath: String, options: Options = Options.CPU, optionalEnv: Environment? = null): CompiledModel = standIn()
    }
}
