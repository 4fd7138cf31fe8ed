-- ardour7-lua create_session.lua <session-dir> <session-name> <n-samples@48k>
-- A 48 kHz session (None/Dummy backend) with one mono track "Speech" holding a region of exactly
-- <n-samples> made by Ardour itself (Track:bounce_range of the empty track); the test then
-- overwrites that region's source file with the speech clip. (Headless luasession has no
-- Editor:do_import and libardour's Lua bindings have no import call.)
local dir, name, nsamp = arg[1], arg[2], tonumber(arg[3])
assert(dir and name and nsamp, "usage: <session-dir> <session-name> <n-samples>")
local s = create_session(dir, name, 48000)
assert(s, "create_session failed")
print("ENGINE backend=" .. AudioEngine:current_backend_name() .. " rate=" .. Session:nominal_sample_rate())
local tl = Session:new_audio_track(1, 2, nil, 1, "Speech", ARDOUR.PresentationInfo.max_order, ARDOUR.TrackMode.Normal, true)
local tr = tl:front():to_track()
assert(not tr:isnil())
-- Ardour auto-connects a new track's outputs to the master bus from its own thread: a session
-- saved before that ran had an unconnected track, and every export of it was silent (seen in
-- about one run in three). Connect them here, and check.
local engine = Session:engine()
for i = 1, 2 do
	local src, dst = "Speech/audio_out " .. i, "Master/audio_in " .. i
	if not tr:output():audio(i - 1):connected_to(dst) then
		engine:connect(src, dst)
	end
	assert(tr:output():audio(i - 1):connected_to(dst), src .. " is not connected to " .. dst)
end
print("CONNECTED Speech -> Master")
local region = tr:bounce_range(0, nsamp, ARDOUR.InterThreadInfo(), tr:main_outs(), false, "speech")
assert(not region:isnil(), "bounce_range failed")
-- No region fades: Ardour's default 64-sample fade in/out would change the clip's first and last
-- samples, and the test compares the export with a render of the clip itself.
local ar = region:to_audioregion()
ar:set_fade_in_active(false)
ar:set_fade_out_active(false)
local pl = tr:playlist()
-- Ardour extends the session range only for some operation names (Session::playlist_region_added).
Session:begin_reversible_command("insert file")
pl:to_stateful():clear_changes()
pl:add_region(region, Temporal.timepos_t(0), 1, false, 0, 0, false)
Session:add_stateful_diff_command(pl:to_statefuldestructible())
Session:commit_reversible_command(nil)
print("SOURCE_PATH=" .. region:source(0):to_filesource():path())
local loc = Session:locations():session_range_location()
assert(loc ~= nil, "no session range")
print("SESSION_RANGE " .. loc:start():samples() .. " " .. loc:_end():samples())
Session:save_state("", false, false, false, false, false)
print("SAVED")
close_session()
