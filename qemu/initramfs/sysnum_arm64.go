package main

// sysFinitModule is finit_module(2) on arm64 (the syscall package, frozen,
// does not name it on every architecture).
const sysFinitModule = 273
