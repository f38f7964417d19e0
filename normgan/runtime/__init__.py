"""Where normgan runs: devices, CPU threads, free memory and disk, user paths. Leaves of the
import graph (standard library and torch only); this package imports nothing."""
