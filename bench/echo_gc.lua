-- Benchmark target: examples/echo_server.lua (coroutine handler) with the
-- collector tuned for big messages, as README (Performance, garbage
-- collector) suggests: minor collections when the heap grew by 100 %
-- instead of 20 %, major ones at 300 % instead of 100 %.  Every minor
-- collection walks every coroutine's stack, so with a coroutine per
-- connection fewer of them save most of the GC's time.
--   lua5.4 bench/echo_gc.lua [port] [echo_server.lua options]
collectgarbage("generational", 100, 300)
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local main = assert(loadfile(dir .. "/../examples/echo_server.lua"))
main(...)
