-- ardour7-lua setup_plugin.lua <session-dir> <session-name> <plugin-name> <switch-sample>
-- Inserts the VST3 plugin on track "Speech" (pre-fader) and saves three snapshots:
--   <name>_auto:   Mode automated Original -> Modified at <switch-sample> (automation Play)
--   <name>_noauto: automation Off, Mode = Original
--   <name>_lat40:  as _noauto, with the Latency parameter set to 40 ms in Ardour's generic
--                  parameter list (the change is saved in the plugin state and applied on load)
-- and prints what Ardour reads: parameters, latency, block size.
local dir, name, pname, switch = arg[1], arg[2], arg[3], tonumber(arg[4])
assert(load_session(dir, name), "load_session failed")
local proc = ARDOUR.LuaAPI.new_plugin(Session, pname, ARDOUR.PluginType.VST3, "")
assert(not proc:isnil(), "new_plugin failed: " .. pname .. " (not in Ardour's VST3 cache?)")
local route = Session:route_by_name("Speech")
assert(route:add_processor_by_index(proc, 0, nil, true) == 0, "add_processor_by_index failed")
local plug = proc:to_insert():plugin(0)
print("PLUGIN " .. plug:name())
print("BLOCK " .. Session:get_block_size())
local idx = {}
for i = 0, plug:parameter_count() - 1 do
  local _, t = plug:get_parameter_descriptor(i, ARDOUR.ParameterDescriptor())
  local pd = t[2]
  idx[pd.label] = { i = i, lower = pd.lower, upper = pd.upper, toggled = pd.toggled }
  print(string.format("PARAM %d %q lower=%s upper=%s toggled=%s", i, pd.label, tostring(pd.lower), tostring(pd.upper), tostring(pd.toggled)))
end
assert(idx["Mode"], "no Mode parameter")
assert(idx["Latency"], "no Latency parameter in Ardour's list")
sleep(1)
print("LATENCY " .. proc:signal_latency())

local mode = idx["Mode"]
local al, cl, pd = ARDOUR.LuaAPI.plugin_automation(proc, mode.i)
cl:clear_list()
-- Plugin automation here is in BeatTime (1 tick = 12.5 samples at 48 kHz): the switch sample is
-- on a 25-sample grid. Discrete interpolation (0) steps; otherwise hold the lower value until
-- 25 samples before the switch.
cl:add(Temporal.timepos_t(0), mode.lower, false, false)
if cl:interpolation() ~= 0 then cl:add(Temporal.timepos_t(switch - 25), mode.lower, false, false) end
cl:add(Temporal.timepos_t(switch), mode.upper, false, false)
local ac = proc:to_automatable():automation_control(Evoral.Parameter(ARDOUR.AutomationType.PluginAutomation, 0, mode.i), false)
ac:set_automation_state(ARDOUR.AutoState.Play)
for ev in cl:events():iter() do print("EVENT " .. ev.when:samples() .. " " .. ev.value) end
Session:save_state(name .. "_auto", false, false, false, false, false)

ac:set_automation_state(ARDOUR.AutoState.Off)
ARDOUR.LuaAPI.set_processor_param(proc, mode.i, mode.lower)
Session:save_state(name .. "_noauto", false, false, false, false, false)

local lat = idx["Latency"]
-- The six choices 20, 40, 80, 160, 320, 640 ms spread over [lower, upper]: 40 ms is the second.
ARDOUR.LuaAPI.set_processor_param(proc, lat.i, lat.lower + (lat.upper - lat.lower) / 5)
for t = 1, 3 do
  sleep(1)
  print("LATENCY_AFTER_SET " .. t .. " " .. proc:signal_latency())
end
Session:save_state(name .. "_lat40", false, false, false, false, false)
print("SAVED")
close_session()
