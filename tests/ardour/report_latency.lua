-- ardour7-lua report_latency.lua <session-dir> <snapshot>
-- Opens a snapshot and prints the latency Ardour reads for the plugin once it has settled.
local dir, snap = arg[1], arg[2]
assert(load_session(dir, snap), "load_session failed: " .. snap)
local route = Session:route_by_name("Speech")
local proc = route:nth_plugin(0)
assert(not proc:isnil(), "plugin not restored")
sleep(2)
print("LATENCY " .. proc:signal_latency())
close_session()
