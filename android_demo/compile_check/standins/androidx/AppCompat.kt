// Compile-check stand-in, signatures only (no behaviour: every body throws); never packaged.
// android_demo/compile_check.sh compiles it into a throwaway jar that the app is type-checked
// against, because the real AndroidX / kotlinx .aar and .jar files (Google Maven, Maven Central)
// cannot be reached from the machines this project runs on.
//
// Signatures: androidx.appcompat:appcompat 1.7.0 (developer.android.com/reference/androidx/appcompat/
// app/AppCompatActivity). Left out: FragmentActivity between it and ComponentActivity, and every
// member the app does not call (it uses only what android.app.Activity already has).
package androidx.appcompat.app

open class AppCompatActivity : androidx.activity.ComponentActivity()
