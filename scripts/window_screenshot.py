#!/usr/bin/env python3
"""Opens the plugin window headless and takes a screenshot of it, with real speech playing.

The standalone build of the plugin (`cargo build -p streamspeech_vocoder --features standalone
--bin streamspeech-vocoder-standalone`) runs under Xvfb on a private JACK server with the dummy
driver (no sound card needed); `jack-play` loops a speech clip into its input, so the live
spectrograms show speech. Halfway through, the Mode button "Modified" is clicked (xdotool), so
the wet spectrogram shows the Original -> Modified switch. The screenshot is checked: the window
has the expected size and the spectrograms are not blank.

    apt install xvfb jackd2 jack-tools xdotool      pip install pillow
    python3 scripts/window_screenshot.py --standalone target/release/streamspeech-vocoder-standalone

Writes <out>/window.png and <out>/window.json (what was measured); exits 1 if a check fails.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCREEN = (1280, 1000)
# The window's default logical size (plugin/src/view.rs, WindowSize::DEFAULT) at scale 1.
EXPECTED = (900, 760)


def need(tool):
    if shutil.which(tool) is None:
        sys.exit(f"window_screenshot: `{tool}` is missing (apt install xvfb jackd2 jack-tools xdotool)")


def wait_for(pred, seconds, what):
    t0 = time.time()
    while time.time() - t0 < seconds:
        if pred():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {seconds} s waiting for {what}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--standalone", default=os.path.join(ROOT, "target", "release", "streamspeech-vocoder-standalone"))
    ap.add_argument("--clip", default=os.path.join(ROOT, "tests", "data", "es_librivox_cuentosdehadas03_14_grimm.wav"))
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "window"))
    ap.add_argument("--seconds", type=float, default=8.0, help="speech played before the screenshot")
    ap.add_argument("--no-switch", action="store_true", help="do not click Modified")
    ap.add_argument("--switch-after", type=float, help="seconds of speech before the click (default: half of --seconds)")
    ap.add_argument("--display", default=":97")
    ap.add_argument("--translate", nargs=3, metavar=("CHECKPOINT", "DATA_DIR", "UNIT_VOCODER"),
                    help="switch the Task to Translate and load these through the window's fields "
                         "(typed and Load clicked, as a user does) before the speech plays")
    args = ap.parse_args()
    for t in ("Xvfb", "jackd", "jack-play", "jack_lsp", "xdotool"):
        need(t)
    if not os.path.isfile(args.standalone):
        sys.exit(f"window_screenshot: {args.standalone} missing (build the standalone first)")
    from PIL import ImageGrab  # pip install pillow

    os.makedirs(args.out, exist_ok=True)
    # One fixed server name: JACK's registry holds few servers, and a new name per run filled it
    # with stale entries over many runs ("Too many servers already active").
    env = dict(os.environ, DISPLAY=args.display, JACK_DEFAULT_SERVER="streamspeech-shot",
               JACK_NO_AUDIO_RESERVATION="1")
    env.setdefault("STREAMSPEECH_VOCODER_MODELS", os.path.join(ROOT, "models"))
    log = open(os.path.join(args.out, "window.log"), "w")
    procs = []
    stop = threading.Event()

    def spawn(cmd, **kw):
        p = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True, **kw)
        procs.append(p)
        return p

    result = {"display": args.display, "screen": SCREEN, "expected_window": EXPECTED}
    try:
        spawn(["Xvfb", args.display, "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp"])
        wait_for(lambda: subprocess.run(["xdotool", "getmouselocation"], env=env, capture_output=True).returncode == 0, 20, "Xvfb")
        spawn(["jackd", "-r", "-n", env["JACK_DEFAULT_SERVER"], "-d", "dummy", "-r", "48000", "-p", "512"])
        ports = lambda: subprocess.run(["jack_lsp"], env=env, capture_output=True, text=True).stdout
        wait_for(lambda: "system:playback_1" in ports(), 20, "the JACK server")
        spawn([args.standalone, "--backend", "jack"])
        wait_for(lambda: "streamspeech_vocoder:input_1" in ports(), 120, "the standalone's JACK ports")

        def play():
            penv = dict(env, JACK_PLAY_CONNECT_TO="streamspeech_vocoder:input_%d")
            while not stop.is_set():
                subprocess.run(["jack-play", args.clip], env=penv, stdout=log, stderr=log)

        if args.translate:
            ckpt, data, unit = [os.path.abspath(p) for p in args.translate]
            time.sleep(2)
            # Window coordinates at zoom 100 % (plugin/src/editor.rs, editor/translate_panel.rs):
            # the Task button, the Original voice's path field and Load, then the Translator's
            # checkpoint and data fields and Load (the voice first: the translator's card may grow).
            steps = [("click", 203, 44), ("wait", 1.5),
                     ("click", 229, 258), ("type", unit), ("click", 407, 282), ("wait", 2.0),
                     ("click", 270, 161), ("type", ckpt), ("click", 655, 161), ("type", data), ("click", 852, 161),
                     ("wait", 4.0)]
            for step in steps:
                if step[0] == "click":
                    subprocess.run(["xdotool", "mousemove", str(step[1]), str(step[2]), "click", "1"], env=env, check=True)
                    time.sleep(0.5)
                elif step[0] == "type":
                    subprocess.run(["xdotool", "type", "--delay", "40", step[1]], env=env, check=True)
                    # The window takes the keys a frame at a time: let it read them all first.
                    time.sleep(1.0)
                else:
                    time.sleep(step[1])
            result["translate"] = {"checkpoint": ckpt, "data": data, "unit_vocoder": unit}

        threading.Thread(target=play, daemon=True).start()
        half = args.seconds / 2 if args.switch_after is None else min(args.switch_after, args.seconds)
        time.sleep(half)
        if not args.no_switch and not args.translate:
            # The "Modified" mode button (top row; see plugin/src/editor.rs), at zoom 100 %.
            subprocess.run(["xdotool", "mousemove", "446", "45", "click", "1", "mousemove", "700", "900"], env=env, check=True)
            result["clicked_modified_at_s"] = half
        time.sleep(args.seconds - half)
        img = ImageGrab.grab(xdisplay=args.display).convert("RGB")
        path = os.path.join(args.out, "window.png")
        img.save(path)
        result["png"] = path
    finally:
        stop.set()
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    # Checks: the window's extent (everything not the root window's black) and the colours of
    # the spectrograms (the magma map's warm end: red well above blue).
    w, h = img.size
    px = img.load()
    xs, ys, warm_top, warm_bottom = [], [], 0, 0
    for y in range(0, h, 2):
        for x in range(0, w, 2):
            r, g, b = px[x, y]
            if r + g + b > 24:
                xs.append(x)
                ys.append(y)
            if r > 150 and r > b + 40:
                if y < h * 0.5:
                    warm_top += 4
                else:
                    warm_bottom += 4
    bbox = (min(xs), min(ys), max(xs) + 2, max(ys) + 2) if xs else (0, 0, 0, 0)
    result.update(window_bbox=bbox, window_size=(bbox[2] - bbox[0], bbox[3] - bbox[1]), warm_pixels_top_half=warm_top,
                  warm_pixels_bottom_half=warm_bottom)
    checks = {
        "window_has_expected_size": abs(result["window_size"][0] - EXPECTED[0]) <= 4 and abs(result["window_size"][1] - EXPECTED[1]) <= 4,
        # Speech in the input spectrogram (upper half of the window) and in the wet one (lower).
        "input_spectrogram_not_blank": warm_top > 2000,
        "wet_spectrogram_not_blank": warm_bottom > 2000,
    }
    result["checks"] = checks
    json.dump(result, open(os.path.join(args.out, "window.json"), "w"), indent=2)
    print(json.dumps(result, indent=2))
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
