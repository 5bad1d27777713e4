/* A stand-in for the Apple SDK's TargetConditionals.h, used only by .ci/run's
 * `cargo check -p xtask --target aarch64-apple-darwin` on Linux: ring's C code
 * (rustls's crypto, under kube's TLS) includes it to tell macOS from iOS. Nothing
 * compiled with it is linked or shipped; a real macOS build uses the SDK's. */
#ifndef CILIUM_CONFORMANCE_TARGET_CONDITIONALS_H
#define CILIUM_CONFORMANCE_TARGET_CONDITIONALS_H
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_SIMULATOR 0
#endif
