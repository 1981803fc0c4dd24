plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.srdeploy.demo"
    compileSdk = 34

    defaultConfig {
        applicationId = "dev.srdeploy.demo"
        minSdk = 24
        targetSdk = 34
        versionCode = 1
        versionName = "0.1.0"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }
    // The bundled .tflite must stay uncompressed so the interpreter can memory-map it.
    androidResources {
        noCompress += "tflite"
    }
}

dependencies {
    implementation(project(":tiling"))
    // LiteRT's CompiledModel API (CPU, GPU accelerator, NPU through the vendor dispatch library)
    implementation("com.google.ai.edge.litert:litert:2.2.0")
    implementation("com.google.ai.edge.litert:litert-gpu:2.2.0")
    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("androidx.activity:activity-ktx:1.9.1")
    implementation("androidx.lifecycle:lifecycle-runtime-ktx:2.8.4")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.8.1")
}
