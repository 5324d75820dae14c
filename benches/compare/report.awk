# Summary of benches/compare.sh's runs.tsv and bulk.tsv (mawk-compatible).
#   awk -F'\t' [-v labels="a=(a) ...;b=...;"] [-v cmps="..."] -f report.awk runs.tsv
# cmps: the comparisons to print, ";"-separated, each "cand|base[,base...]|name|kind|target":
#   kind "tput": cand / base per round, throughput and p99; target "ge:1.10" (ratio >= 1.10),
#                "gt:1.00" (ratio above 1.00, "ahead") or "-" (none)
#   kind "p99best": cand's p99 / the lowest p99 of the bases per round; target "le:1.00"
# Without cmps: fxa-gateway vs nginx as before (b c, d e, f g; c h for the access log).
# Columns: round case attempt kept reason rps p50_us p99_us requests busy_pct core_us_req
#          proxy_us_req upstream_us_req client_busy_pct foreign_pct client_foreign_pct
#          upstream_new_conns proxy_user_us_req

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
    add(core, $2, $11); add(prox, $2, $12); add(cli, $2, $14); add(upc, $2, $17); add(usr, $2, $18)
    add(rrps, $2 SUBSEP $1, $6); add(rp99, $2 SUBSEP $1, $8)
    rounds[$1] = 1
}
END {
    n = split(labels, L, ";")
    for (i = 1; i <= n; i++)
        if (L[i] != "") { split(L[i], kv, "="); label[kv[1]] = kv[2]; order[++m] = kv[1] }
    if (m == 0) { # no labels given: the cases by letter
        n = split("a b c d e f g h", L, " ")
        for (i = 1; i <= n; i++) { label[L[i]] = "(" L[i] ")"; order[++m] = L[i] }
    }

    fmt = "%-42s %8s %9s %9s %6s %6s %8s %8s %7s %7s %6s\n"
    printf fmt, "case (medians of kept runs)", "req/s", "p50", "p99", "srv%", "cli%", "core us", "proc us", "usr us", "up conn", "kept"
    for (i = 1; i <= m; i++) {
        k = order[i]
        if (!(k in kept)) {
            printf fmt, label[k], "-", "-", "-", "-", "-", "-", "-", "-", "-", sprintf("0/%d", total[k])
            continue
        }
        printf fmt, label[k], sprintf("%.0f", median(rps[k])), lat(median(p50[k])), lat(median(p99[k])),
            sprintf("%.1f", median(busy[k])), sprintf("%.1f", median(cli[k])),
            sprintf("%.2f", median(core[k])), sprintf("%.2f", median(prox[k])),
            (k in usr) ? sprintf("%.2f", median(usr[k])) : "-", sprintf("%.0f", median(upc[k])),
            sprintf("%d/%d", kept[k], total[k])
    }
    print ""
    print "srv% / cli%: busy share of the server core / the load generator's core during the run."
    print "core us: server-core busy time (proxy + upstream + kernel) per request; proc us: CPU time of"
    print "the process under test alone (nginx worker or fxa-gateway; for (a) the upstream) per request;"
    print "usr us: its user-space part (the rest of proc us is kernel time: TCP, epoll)."
    print "up conn: connections the upstream accepted during a run: about one per request if the proxy's"
    print "keep-alive pool did not hold; tens to hundreds are the pool refilling after the previous run"
    print "cut its in-flight requests; for (a) the load generator's own connections."
    print ""
    if (cmps == "")
        cmps = "c|b|plain HTTP/1.1 vs nginx|tput|ge:1.00;e|d|TLS HTTP/1.1 vs nginx|tput|ge:1.00;" \
            "g|f|TLS HTTP/2 vs nginx|tput|ge:1.00;h|c|access log on / off|tput|-"
    print "ratios per round (ratio of round medians): median (min..max) over rounds"
    fmt = "%-34s %-20s %-20s %-6s %-9s %s\n"
    printf fmt, "", "throughput", "p99", "rounds", "target", "verdict"
    nc = split(cmps, CM, ";")
    for (q = 1; q <= nc; q++) {
        if (CM[q] == "") continue
        split(CM[q], w, "|"); cand = w[1]; nb = split(w[2], B, ","); name = w[3]; kind = w[4]; tgt = w[5]
        tr = ""; pr = ""; cnt = 0; tmin = 1e18; tmax = 0; pmin = 1e18; pmax = 0
        for (r in rounds) {
            if (!((cand SUBSEP r) in rrps)) continue
            best = ""; bt = ""
            for (b = 1; b <= nb; b++) {
                if (!((B[b] SUBSEP r) in rrps)) continue
                v = median(rp99[B[b] SUBSEP r])
                if (best == "" || v < best) best = v
                if (bt == "") bt = median(rrps[B[b] SUBSEP r])
            }
            if (best == "" || best <= 0) continue
            p = median(rp99[cand SUBSEP r]) / best
            t = (kind == "tput") ? median(rrps[cand SUBSEP r]) / bt : 0
            tr = tr " " t; pr = pr " " p; cnt++
            if (t < tmin) tmin = t
            if (t > tmax) tmax = t
            if (p < pmin) pmin = p
            if (p > pmax) pmax = p
        }
        if (cnt == 0) { printf fmt, name, "-", "-", "0", tgt, "no data"; continue }
        tm = median(tr); pm = median(pr)
        split(tgt, g, ":"); verdict = "-"
        x = (kind == "tput") ? tm : pm
        if (g[1] == "ge") verdict = (x >= g[2] ? "met" : "MISSED")
        else if (g[1] == "gt") verdict = (x > g[2] ? "met" : "MISSED")
        else if (g[1] == "le") verdict = (x <= g[2] ? "met" : "MISSED")
        target = (g[1] == "ge") ? ">= " g[2] : (g[1] == "gt") ? "> " g[2] : (g[1] == "le") ? "<= " g[2] : "-"
        if (kind == "tput")
            printf fmt, name, sprintf("%.2f (%.2f..%.2f)", tm, tmin, tmax), sprintf("%.2f (%.2f..%.2f)", pm, pmin, pmax),
                cnt, target, verdict
        else
            printf fmt, name, "", sprintf("%.2f (%.2f..%.2f)", pm, pmin, pmax), cnt, target, verdict
    }
}
