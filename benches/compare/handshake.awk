# Summary of benches/compare.sh's handshake.tsv (mawk-compatible).
#   awk -F'\t' [-v labels="d=(d) ...;e=...;"] -f handshake.awk handshake.tsv
# Columns: round case mode connections seconds conn_per_s resumed_pct busy_pct proc_us_conn
#          foreign_pct kept reason

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
function add(arr, key, v) { arr[key] = (key in arr) ? arr[key] " " v : v }

NR == 1 { next }
{
    key = $3 SUBSEP $2
    total[key]++
    if ($11 != 1) next
    kept[key]++
    add(rate, key, $6); add(res, key, $7); add(busy, key, $8); add(cpu, key, $9)
    rr[$3 SUBSEP $1 SUBSEP $2] = $6; rounds[$1] = 1
}
END {
    n = split(labels, L, ";")
    for (i = 1; i <= n; i++)
        if (L[i] != "") { split(L[i], kv, "="); label[kv[1]] = kv[2]; order[++m] = kv[1] }
    if (m == 0) {
        n = split("d e j m", L, " ")
        for (i = 1; i <= n; i++) { label[L[i]] = "(" L[i] ")"; order[++m] = L[i] }
    }
    fmt = "%-34s %-7s %10s %9s %6s %10s %6s %s\n"
    printf fmt, "server (medians of kept rounds)", "mode", "conn/s", "resumed", "srv%", "proc us/c", "kept", "vs nginx (d)"
    split("new reuse", modes, " ")
    for (mi = 1; mi <= 2; mi++) {
        md = modes[mi]
        for (i = 1; i <= m; i++) {
            k = order[i]; key = md SUBSEP k
            if (!(key in total)) continue
            if (!(key in kept)) { printf fmt, label[k], "-" md, "-", "-", "-", "-", "0/" total[key], ""; continue }
            rt = ""
            for (r in rounds)
                if (((md SUBSEP r SUBSEP k) in rr) && ((md SUBSEP r SUBSEP "d") in rr) && rr[md SUBSEP r SUBSEP "d"] > 0)
                    rt = rt " " rr[md SUBSEP r SUBSEP k] / rr[md SUBSEP r SUBSEP "d"]
            printf fmt, label[k], "-" md, sprintf("%.0f", median(rate[key])), sprintf("%.0f%%", median(res[key])),
                sprintf("%.1f", median(busy[key])), sprintf("%.1f", median(cpu[key])), kept[key] "/" total[key],
                (rt == "" || k == "d") ? "" : sprintf("%.2f", median(rt))
        }
    }
}
