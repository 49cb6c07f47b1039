# bench/http.sh - sourced by bench/run for BENCH_ONLY=http: the nginx host
# (bin/layerup serve, one worker) against docker-registry 2.8 over HTTP,
# side by side in the same run:
#   http-patch   one PATCH of the whole big blob (Content-Length and chunked)
#                + PUT ?digest=: MB/s, server CPU s/GiB, server peak RSS
#   http-skopeo  skopeo copy of a 5-layer OCI image (5 x SIZE/10... capped
#                at 100 MiB per layer) into each
#   http-small   SMALL_N blobs of 4 KiB, POST + PUT ?digest= over keep-alive
#   http-latency GET /v2/ latency on the host's single worker while a
#                Content-Length PATCH of the big blob runs on it
# Expects from bench/run: WORK SRC SIZE DIGEST REPS SMALL_N RAW, lib.sh.

HTTP_PID=
HTTP_BASE=
HTTP_PREFIX=

http_start() { # ROOT
	local root=$1 port
	HTTP_PREFIX=$WORK/http-prefix
	rm -rf "$HTTP_PREFIX"
	mkdir -p "$HTTP_PREFIX" "$root"
	for _ in 1 2 3; do
		port=$(free_port) || die "no free port"
		BUILD=$BUILD bin/layerup serve "$root" --listen "127.0.0.1:$port" --workers 1 \
			--prefix "$HTTP_PREFIX" --log-level error >>"$WORK/http.log" 2>&1 </dev/null &
		HTTP_PID=$!
		HTTP_BASE="http://127.0.0.1:$port"
		for _ in $(seq 1 100); do
			if curl -fsS -o /dev/null "$HTTP_BASE/v2/" 2>/dev/null; then
				return 0
			fi
			kill -0 "$HTTP_PID" 2>/dev/null || break
			sleep 0.1
		done
		http_stop
	done
	die "layerup serve did not start (see $WORK/http.log)"
}

http_stop() {
	if [ -n "$HTTP_PID" ]; then
		kill "$HTTP_PID" 2>/dev/null || true
		wait "$HTTP_PID" 2>/dev/null || true
		HTTP_PID=
	fi
}

# The single worker's pid (waits for nginx's pid file and its child).
http_worker() {
	local master="" w=""
	for _ in $(seq 1 50); do
		master=$(cat "$HTTP_PREFIX/nginx.pid" 2>/dev/null) || true
		if [ -n "$master" ]; then
			w=$(cat /proc/"$master"/task/*/children 2>/dev/null | awk '{ print $1; exit }')
			[ -n "$w" ] && { echo "$w"; return 0; }
		fi
		sleep 0.1
	done
	die "no nginx worker under $HTTP_PREFIX"
}

proc_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }
proc_hwm_mib() { awk '$1 == "VmHWM:" { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# post BASE REPO -> absolute upload URL
http_post() {
	local loc
	loc=$(curl -fsS -o /dev/null -w '%header{location}' -X POST "$1/v2/$2/blobs/uploads/") || return 1
	case $loc in http*) printf '%s' "$loc" ;; *) printf '%s%s' "$1" "$loc" ;; esac
}

# patch_put WORKLOAD CONTENDER BASE PID MODE(cl|chunked)
patch_put() {
	local w=$1 c=$2 base=$3 pid=$4 mode=$5 url loc t0 t1 cpu0 cpu1 code sep te=()
	[ "$mode" = chunked ] && te=(-H 'Transfer-Encoding: chunked')
	url=$(http_post "$base" bench/http) || { record "$w" "$c" failed 1; return 1; }
	cpu0=$(proc_cpu "$pid")
	t0=$(now_us)
	/usr/bin/time -f '%U %S' -o "$WORK/patch.time" curl -fsS -o /dev/null \
		-w '%header{location}' -X PATCH -H 'Expect:' "${te[@]}" -T "$SRC" "$url" >"$WORK/patch.loc" ||
		{ record "$w" "$c" failed 1; return 1; }
	loc=$(cat "$WORK/patch.loc")
	case $loc in http*) ;; *) loc=$base$loc ;; esac
	sep='?'
	case $loc in *\?*) sep='&' ;; esac
	code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT "$loc${sep}digest=$DIGEST")
	t1=$(now_us)
	cpu1=$(proc_cpu "$pid")
	[ "$code" = 201 ] || { log "$c PUT gave $code"; record "$w" "$c" failed 1; return 1; }
	record "$w" "$c" seconds "$(us_to_s $((t1 - t0)))"
	record "$w" "$c" mb_per_s "$(mbps "$SIZE" $((t1 - t0)))"
	record "$w" "$c" cpu_s_per_gib "$(awk -v a="$cpu0" -v b="$cpu1" -v s="$SIZE" \
		'BEGIN { printf "%.3f", (b - a) / (s / 1073741824) }')"
	record "$w" "$c" rss_mib "$(proc_hwm_mib "$pid")"
	record "$w" "$c" client_cpu_s "$(awk '{ printf "%.3f", $1 + $2 }' "$WORK/patch.time")"
}

# A 5-layer OCI layout from slices of SRC (uncompressed layers).
make_layout() {
	local dir=$1 n=5 each i layers="" d
	each=$((SIZE / 10))
	[ "$each" -gt $((100 * 1024 * 1024)) ] && each=$((100 * 1024 * 1024))
	mkdir -p "$dir/blobs/sha256"
	printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
	local diffs=""
	for ((i = 0; i < n; i++)); do
		dd if="$SRC" of="$dir/layer" bs=1M iflag=skip_bytes,count_bytes skip=$((i * each)) \
			count="$each" status=none
		d=$(sha256sum "$dir/layer" | cut -c1-64)
		mv "$dir/layer" "$dir/blobs/sha256/$d"
		layers="$layers${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$d\",\"size\":$each}"
		diffs="$diffs${diffs:+,}\"sha256:$d\""
	done
	printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[%s]}}' "$diffs" >"$dir/config"
	local cd cs md ms
	cd=$(sha256sum "$dir/config" | cut -c1-64)
	cs=$(stat -c %s "$dir/config")
	mv "$dir/config" "$dir/blobs/sha256/$cd"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[%s]}' \
		"$cd" "$cs" "$layers" >"$dir/manifest"
	md=$(sha256sum "$dir/manifest" | cut -c1-64)
	ms=$(stat -c %s "$dir/manifest")
	mv "$dir/manifest" "$dir/blobs/sha256/$md"
	printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"b"}}]}' \
		"$md" "$ms" >"$dir/index.json"
}

# As root, containers/image keeps its blob-info cache (which blob lives in
# which repository of which registry) in /var/lib/containers/cache whatever
# --tmpdir or HOME say.  So skopeo runs as the specs run it
# (spec/integration/helpers/podman.lua): in a private mount namespace with
# a directory of its own bound over /var/lib/containers (over /var/lib
# when that does not exist), fresh for every copy, so that neither the
# machine's cache is written nor one copy's entries steer the next.
# Rootless, the cache is under $HOME (set below), private already.
SKOPEO_WRAP=()
skopeo_isolate() { # DIR: sets SKOPEO_WRAP; fails when root cannot isolate
	local priv=$1/varlib target=/var/lib
	SKOPEO_WRAP=()
	[ "$(id -u)" = 0 ] || return 0
	command -v unshare >/dev/null || return 1
	[ -d /var/lib/containers ] && target=/var/lib/containers
	rm -rf "$priv"
	mkdir -p "$priv"
	SKOPEO_WRAP=(unshare -m sh -c 'mount --bind "$1" "$2" || exit 125; shift 2; exec "$@"' sh "$priv" "$target")
	"${SKOPEO_WRAP[@]}" true
}

skopeo_copy() { # CONTENDER BASE SERVER_PID
	local c=$1 base=$2 spid=$3 t0 t1 cpu0 cpu1 sk=$WORK/skopeo
	mkdir -p "$sk/home" "$sk/tmp" "$sk/run" "$sk/config"
	printf '{"default":[{"type":"insecureAcceptAnything"}]}' >"$sk/policy.json"
	: >"$sk/registries.conf"
	skopeo_isolate "$sk" || { log "skopeo: no private /var/lib/containers (unshare -m): not run"; record http-skopeo "$c" failed 1; return 0; }
	cpu0=$(proc_cpu "$spid")
	t0=$(now_us)
	if /usr/bin/time -f '%U %S' -o "$WORK/skopeo.time" "${SKOPEO_WRAP[@]}" \
		env HOME="$sk/home" XDG_RUNTIME_DIR="$sk/run" XDG_CONFIG_HOME="$sk/config" \
		CONTAINERS_REGISTRIES_CONF="$sk/registries.conf" \
		skopeo --policy "$sk/policy.json" --tmpdir "$sk/tmp" copy --dest-tls-verify=false \
		--dest-no-creds --dest-oci-accept-uncompressed-layers --preserve-digests \
		"oci:$WORK/layout:b" "docker://${base#http://}/bench/skopeo:b" >"$WORK/skopeo.log" 2>&1; then
		t1=$(now_us)
		cpu1=$(proc_cpu "$spid")
		record http-skopeo "$c" seconds "$(us_to_s $((t1 - t0)))"
		record http-skopeo "$c" server_cpu_s "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.3f", b - a }')"
		record http-skopeo "$c" client_cpu_s "$(awk '{ printf "%.3f", $1 + $2 }' "$WORK/skopeo.time")"
	else
		log "skopeo copy into $c failed: $(tail -3 "$WORK/skopeo.log")"
		record http-skopeo "$c" failed 1
	fi
}

# SMALL_N blobs: one curl run POSTs them all (keep-alive), a second PUTs
# each to its Location with ?digest= (the registry's monolithic pattern).
small_http() { # CONTENDER BASE
	local c=$1 base=$2 t0 t1 t2 t3 ok
	{
		printf 'silent\nshow-error\nrequest = "POST"\n'
		printf 'write-out = "%%header{location}\\n"\n'
		for ((i = 0; i < SMALL_N; i++)); do
			printf 'url = "%s/v2/bench/small/blobs/uploads/"\n' "$base"
		done
	} >"$WORK/hposts.cfg"
	t0=$(now_us)
	curl -K "$WORK/hposts.cfg" >"$WORK/hlocs" || return 1
	t1=$(now_us)
	head -n "$SMALL_N" "$WORK/small.sums" | paste -d' ' "$WORK/hlocs" - | awk -v dir="$WORK/small" -v base="$base" '
		NR > 1 { print "next" }
		{
			loc = $1; if (loc !~ /^http/) loc = base loc
			sep = (loc ~ /\?/) ? "&" : "?"
			printf "url = \"%s%sdigest=sha256:%s\"\n", loc, sep, $2
			printf "upload-file = \"%s/%s\"\n", dir, $3
			print "header = \"Expect:\""
			print "output = \"/dev/null\""
			print "write-out = \"%{http_code}\\n\""
			print "silent"
		}' >"$WORK/hputs.cfg"
	t2=$(now_us)
	curl -K "$WORK/hputs.cfg" >"$WORK/hcodes" || return 1
	t3=$(now_us)
	ok=$(grep -c '^201$' "$WORK/hcodes" || true)
	[ "$ok" -eq "$SMALL_N" ] || { log "$c small: $ok of $SMALL_N PUTs gave 201"; record http-small "$c" failed 1; return 1; }
	local us=$((t1 - t0 + t3 - t2))
	record http-small "$c" uploads_per_s "$(awk -v n="$SMALL_N" -v u="$us" 'BEGIN { printf "%.1f", n / (u / 1e6) }')"
	record http-small "$c" seconds "$(us_to_s $us)"
}

# GET /v2/ every 10 ms on the host (new connection each) while a PATCH of
# the big blob runs on its only worker; p50/p99/max of curl's total time.
latency_probe() {
	local url pid
	url=$(http_post "$HTTP_BASE" bench/lat) || return 1
	(
		while :; do
			curl -s -o /dev/null -w '%{time_total}\n' "$HTTP_BASE/v2/"
			sleep 0.01
		done
	) >"$WORK/lat.txt" 2>/dev/null &
	pid=$!
	curl -fsS -o /dev/null -X PATCH -H 'Expect:' -T "$SRC" "$url" || true
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null || true
	sort -n "$WORK/lat.txt" | awk '{ v[NR] = $1 * 1000 } END {
		if (NR == 0) exit 1
		p50 = v[int(NR * 0.5) + (NR * 0.5 > int(NR * 0.5))]; if (p50 == "") p50 = v[NR]
		i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
		printf "p50_ms %.2f\np99_ms %.2f\nmax_ms %.2f\nprobes %d\n", p50, v[i99], v[NR], NR
	}' | record_kv http-latency layerup-nginx
}

if wants http; then
	if ! command -v nginx >/dev/null || [ ! -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] ||
		[ ! -f "$BUILD/luajit/layerup/core.so" ]; then
		log "http: nginx, libnginx-mod-http-lua or $BUILD/luajit missing: skipped"
	else
		log "http: $SIZE-byte PATCH to the nginx host vs registry 2.8, Content-Length and chunked ($REPS reps)"
		for ((r = 1; r <= REPS; r++)); do
			REP=$r
			for c in $(rotate "$r" nginx registry); do
				for mode in cl chunked; do
					settle_rm "$WORK/http-lu" "$WORK/http-reg"
					if [ "$c" = nginx ]; then
						http_start "$WORK/http-lu"
						patch_put http-patch "layerup-nginx-$mode" "$HTTP_BASE" "$(http_worker)" "$mode" || true
						http_stop
					elif [ "$HAVE_REGISTRY" = 1 ]; then
						registry_start "$WORK/http-reg"
						patch_put http-patch "registry-$mode" "$REG_BASE" "$REG_PID" "$mode" || true
						registry_stop
					fi
				done
			done
		done
		if command -v skopeo >/dev/null; then
			log "http: skopeo copy of a 5-layer image into each"
			make_layout "$WORK/layout"
			warm "$WORK"/layout/blobs/sha256/*
			for ((r = 1; r <= REPS; r++)); do
				REP=$r
				for c in $(rotate "$r" nginx registry); do
					settle_rm "$WORK/http-lu" "$WORK/http-reg"
					if [ "$c" = nginx ]; then
						http_start "$WORK/http-lu"
						skopeo_copy layerup-nginx "$HTTP_BASE" "$(http_worker)"
						http_stop
					elif [ "$HAVE_REGISTRY" = 1 ]; then
						registry_start "$WORK/http-reg"
						skopeo_copy registry "$REG_BASE" "$REG_PID"
						registry_stop
					fi
				done
			done
		fi
		log "http: $SMALL_N small blobs (POST + PUT over keep-alive) into each"
		for ((r = 1; r <= SMALL_REPS; r++)); do
			REP=$r
			for c in $(rotate "$r" nginx registry); do
				if [ "$c" = nginx ]; then
					http_start "$WORK/http-small-lu-$r"
					small_http layerup-nginx "$HTTP_BASE" || true
					http_stop
				elif [ "$HAVE_REGISTRY" = 1 ]; then
					registry_start "$WORK/http-small-reg-$r"
					small_http registry "$REG_BASE" || true
					registry_stop
				fi
			done
		done
		log "http: GET /v2/ latency during a $SIZE-byte PATCH on the same worker"
		for ((r = 1; r <= REPS; r++)); do
			REP=$r
			settle_rm "$WORK/http-lu"
			http_start "$WORK/http-lu"
			latency_probe || true
			http_stop
		done
		settle_rm "$WORK/http-lu" "$WORK/http-reg"
	fi
fi
