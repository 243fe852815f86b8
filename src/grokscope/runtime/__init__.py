"""The machine a run trains on: devices (`devices`), CPU threads (`threads`), the recorded software and hardware
(`environment`) and the FLOP and GEMM yardsticks of the benchmarks (`perf`)."""
