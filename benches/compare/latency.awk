# Summary of benches/compare.sh's latency.tsv (mawk-compatible).
#   awk -F'\t' [-v labels="a=(a) ...;b=...;"] -f latency.awk latency.tsv
# Columns: round case load_pct target_rps rps p50_us p99_us p999_us ok non2xx errors busy_pct
#          foreign_pct kept reason
# Per load: medians over the kept rounds; the latency each proxy adds to the upstream's own
# (same round, same percentile, minus (a)); fxa-gateway (c) against nginx (b).

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
    return (us < 1000 && us > -1000) ? sprintf("%dus", us) : sprintf("%.2fms", us / 1000)
}
function add(arr, key, v) { arr[key] = (key in arr) ? arr[key] " " v : v }

NR == 1 { next }
{
    key = $3 SUBSEP $2
    total[key]++; loads[$3] = 1; tgt[$3] = $4
    if ($14 != 1) next
    kept[key]++
    add(rps, key, $5); add(p50, key, $6); add(p99, key, $7); add(p999, key, $8); add(busy, key, $12)
    v50[$3 SUBSEP $1 SUBSEP $2] = $6; v99[$3 SUBSEP $1 SUBSEP $2] = $7; v999[$3 SUBSEP $1 SUBSEP $2] = $8
    rounds[$1] = 1
}
END {
    n = split(labels, L, ";")
    for (i = 1; i <= n; i++)
        if (L[i] != "") { split(L[i], kv, "="); label[kv[1]] = kv[2]; order[++m] = kv[1] }
    if (m == 0) {
        n = split("a b c i l", L, " ")
        for (i = 1; i <= n; i++) { label[L[i]] = "(" L[i] ")"; order[++m] = L[i] }
    }
    nl = 0
    for (l in loads) ld[++nl] = l + 0
    for (i = 2; i <= nl; i++) { t = ld[i]; for (j = i - 1; j >= 1 && ld[j] > t; j--) ld[j + 1] = ld[j]; ld[j + 1] = t }
    for (li = 1; li <= nl; li++) {
        l = ld[li]
        printf "at %d%% of nginx's saturation rate (%s req/s):\n", l, tgt[l]
        fmt = "  %-34s %9s %9s %9s %9s %6s %6s\n"
        printf fmt, "server (medians of kept rounds)", "req/s", "p50", "p99", "p99.9", "srv%", "kept"
        for (i = 1; i <= m; i++) {
            k = order[i]; key = l SUBSEP k
            if (!(key in total)) continue
            if (!(key in kept)) { printf fmt, label[k], "-", "-", "-", "-", "-", "0/" total[key]; continue }
            printf fmt, label[k], sprintf("%.0f", median(rps[key])), lat(median(p50[key])), lat(median(p99[key])),
                lat(median(p999[key])), sprintf("%.1f", median(busy[key])), kept[key] "/" total[key]
        }
        printf fmt, "added to the upstream's (x - a):", "", "p50", "p99", "p99.9", "", ""
        for (i = 1; i <= m; i++) {
            k = order[i]
            if (k == "a") continue
            d50 = ""; d99 = ""; d999 = ""
            for (r in rounds) {
                if (!((l SUBSEP r SUBSEP k) in v50) || !((l SUBSEP r SUBSEP "a") in v50)) continue
                d50 = d50 " " (v50[l SUBSEP r SUBSEP k] - v50[l SUBSEP r SUBSEP "a"])
                d99 = d99 " " (v99[l SUBSEP r SUBSEP k] - v99[l SUBSEP r SUBSEP "a"])
                d999 = d999 " " (v999[l SUBSEP r SUBSEP k] - v999[l SUBSEP r SUBSEP "a"])
            }
            if (d50 == "") continue
            printf fmt, label[k], "", lat(median(d50)), lat(median(d99)), lat(median(d999)), "", ""
        }
        r99 = ""; r999 = ""
        for (r in rounds) {
            if (!((l SUBSEP r SUBSEP "c") in v99) || !((l SUBSEP r SUBSEP "b") in v99)) continue
            if (v99[l SUBSEP r SUBSEP "b"] <= 0 || v999[l SUBSEP r SUBSEP "b"] <= 0) continue
            r99 = r99 " " v99[l SUBSEP r SUBSEP "c"] / v99[l SUBSEP r SUBSEP "b"]
            r999 = r999 " " v999[l SUBSEP r SUBSEP "c"] / v999[l SUBSEP r SUBSEP "b"]
        }
        if (r99 != "")
            printf "  fxa-gateway / nginx: p99 %.2f, p99.9 %.2f (median over rounds; <= 1.00: no worse)\n", median(r99), median(r999)
        print ""
    }
}
