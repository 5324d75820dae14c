# Summary of benches/bearer.sh's runs.tsv (mawk-compatible); the columns are compare.sh's.
#   awk -F'\t' [-v labels="n=...;p=...;t=...;"] [-v target=0.90] -f bearer-report.awk runs.tsv
# Columns: round case attempt kept reason rps p50_us p99_us requests busy_pct core_us_req
#          proxy_us_req upstream_us_req client_busy_pct foreign_pct client_foreign_pct
#          upstream_new_conns
# Cases: n = nginx plain proxy, p = fxa-gateway plain route, t = fxa-gateway bearer route,
# j = the same bearer route with a JWT verified locally (optional),
# r = nginx auth_request + proxy_cache (njs checks "active" and the scope).

function median(list,    n, a, i, j, t) {
    n = split(list, a, " ")
    if (n == 0) return "nan"
    for (i = 2; i <= n; i++) {
        t = a[i] + 0
        for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]
        a[j + 1] = t
    }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function lat(us) {
    if (us == "nan" || us == "") return "-"
    return us < 1000 ? sprintf("%dus", us) : sprintf("%.2fms", us / 1000)
}
function add(arr, key, v) { arr[key] = (key in arr) ? arr[key] " " v : v }

NR == 1 { next }
{
    total[$2]++
    if ($4 != 1) next
    kept[$2]++
    add(rps, $2, $6); add(p50, $2, $7); add(p99, $2, $8); add(busy, $2, $10)
    add(core, $2, $11); add(prox, $2, $12); add(cli, $2, $14); add(upc, $2, $17)
    add(rrps, $2 SUBSEP $1, $6); add(rp99, $2 SUBSEP $1, $8)
    rounds[$1] = 1
}
END {
    if (target == "") target = 0.90
    n = split(labels, L, ";")
    for (i = 1; i <= n; i++)
        if (L[i] != "") { split(L[i], kv, "="); label[kv[1]] = kv[2]; order[++m] = kv[1] }
    if (m == 0) {
        n = split("n p t r", L, " ")
        for (i = 1; i <= n; i++) { label[L[i]] = "(" L[i] ")"; order[++m] = L[i] }
    }

    fmt = "%-38s %8s %9s %9s %6s %6s %8s %8s %7s %6s\n"
    printf fmt, "case (medians of kept runs)", "req/s", "p50", "p99", "srv%", "cli%", "core us", "proc us", "up conn", "kept"
    for (i = 1; i <= m; i++) {
        k = order[i]
        if (!(k in kept)) {
            printf fmt, label[k], "-", "-", "-", "-", "-", "-", "-", "-", sprintf("0/%d", total[k])
            continue
        }
        printf fmt, label[k], sprintf("%.0f", median(rps[k])), lat(median(p50[k])), lat(median(p99[k])),
            sprintf("%.1f", median(busy[k])), sprintf("%.1f", median(cli[k])),
            sprintf("%.2f", median(core[k])), sprintf("%.2f", median(prox[k])), sprintf("%.0f", median(upc[k])),
            sprintf("%d/%d", kept[k], total[k])
    }
    print ""
    print "srv% / cli%: busy share of the server core / the load generator's core during the run."
    print "core us: server-core busy time (proxy + upstream + kernel) per request; proc us: CPU time of"
    print "the process under test alone (nginx worker or fxa-gateway) per request; for (r) the nginx"
    print "worker that runs auth_request (its introspection cache hits included)."
    print "up conn: connections the upstream accepted during a run (about one per request = no pool)."
    print ""
    print "Ratios per round (of round medians): median (min..max) over rounds"
    fmt = "%-44s %-20s %-20s %-7s %s\n"
    printf fmt, "", "throughput", "p99", "rounds", "target"
    # base cand target name (target "-": none)
    pairs[1] = "p t " target " bearer / plain route (gateway)"
    pairs[2] = "n p - gateway plain / nginx"
    pairs[3] = "n t 1.00 gateway bearer / nginx plain"
    pairs[4] = "r t 1.50 gateway bearer / nginx auth_request"
    pairs[5] = "n r - nginx auth_request / nginx plain"
    pairs[6] = "p j - local JWT / plain route"
    pairs[7] = "t j - local JWT / cached introspection"
    for (q = 1; q <= 7; q++) {
        split(pairs[q], w, " "); base = w[1]; cand = w[2]; tg = w[3]
        name = pairs[q]; sub(/^[a-z] [a-z] [-0-9.]+ /, "", name)
        tr = ""; pr = ""; cnt = 0; tmin = 1e18; tmax = 0; pmin = 1e18; pmax = 0
        for (r in rounds) {
            if (!((base SUBSEP r) in rrps) || !((cand SUBSEP r) in rrps)) continue
            t = median(rrps[cand SUBSEP r]) / median(rrps[base SUBSEP r])
            p = median(rp99[cand SUBSEP r]) / median(rp99[base SUBSEP r])
            tr = tr " " t; pr = pr " " p; cnt++
            if (t < tmin) tmin = t
            if (t > tmax) tmax = t
            if (p < pmin) pmin = p
            if (p > pmax) pmax = p
        }
        if (cnt == 0) { printf fmt, name, "-", "-", "0", "-"; continue }
        tm = median(tr); pm = median(pr)
        verdict = "-"
        if (tg != "-") {
            if (tm >= tg) verdict = sprintf("throughput >= %.2f: met", tg)
            else if (tm >= tg - 0.05) verdict = sprintf("throughput >= %.2f: missed, within noise", tg)
            else verdict = sprintf("throughput >= %.2f: MISSED", tg)
        }
        printf fmt, name, sprintf("%.2f (%.2f..%.2f)", tm, tmin, tmax),
            sprintf("%.2f (%.2f..%.2f)", pm, pmin, pmax), cnt, verdict
    }
}
