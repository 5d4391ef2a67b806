/*
 * kraiter_native: the validator's hot loops in one pass per column, over Arrow buffers.
 *
 * Loaded with ctypes by kraiter_sync/validate/native.py (which compiles it on first use
 * when no prebuilt copy exists) and used only where its output is byte-identical to the
 * polars path it replaces; tests/test_validate_native.py holds the two paths side by side.
 * Every function is pure over the buffers it is given, allocates nothing the caller must
 * free except the key set, and never calls back into Python: ctypes releases the GIL
 * during each call, so two chunks can be worked on at once.
 *
 * Strings arrive as Arrow string_view arrays exactly as polars holds them (no copy): a
 * ks_view points at the 16-byte views (already shifted by the array's offset), the data
 * buffers they refer to, and an optional validity bitmap with its bit offset. Strings
 * produced here leave the same way (views + one data buffer), which polars adopts as is.
 */
#define _DEFAULT_SOURCE /* madvise */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define XXH_INLINE_ALL
#include "xxhash.h"

#define KS_ABI 8

int ks_abi(void) { return KS_ABI; }

static inline int is_valid(const uint8_t *validity, int64_t voff, int64_t i) {
    if (!validity) return 1;
    int64_t b = voff + i;
    return (validity[b >> 3] >> (b & 7)) & 1;
}

typedef struct {
    const uint8_t *views;        /* 16 bytes per row */
    const uint8_t *const *bufs;  /* the data buffers long strings point into */
    const uint8_t *validity;     /* NULL: no nulls */
    int64_t voff;                /* bit offset into validity */
} ks_view;

/* Row i of a string_view array: length <= 12 is inline after the length, else the view
 * holds a 4-byte prefix, the buffer index and the offset in that buffer. */
static inline const uint8_t *view_get(const ks_view *c, int64_t i, int64_t *len) {
    const uint8_t *v = c->views + 16 * i;
    int32_t l, bi, off;
    memcpy(&l, v, 4);
    *len = l;
    if (l <= 12) return v + 4;
    memcpy(&bi, v + 8, 4);
    memcpy(&off, v + 12, 4);
    return c->bufs[bi] + off;
}

static inline int view_valid(const ks_view *c, int64_t i) { return is_valid(c->validity, c->voff, i); }

/* Writes row i's view for the `len` bytes at data + off of an output whose single data
 * buffer is `data` (offsets < 2^31: the caller sizes chunks so). polars takes such
 * string_view arrays as they are, where large_string outputs would be copied. */
static inline void put_view(uint8_t *views, int64_t i, const uint8_t *data, int64_t off,
                            int64_t len) {
    uint8_t *v = views + 16 * i;
    int32_t l = (int32_t)len, zero = 0, o = (int32_t)off;
    memcpy(v, &l, 4);
    if (len <= 12) {
        memset(v + 4, 0, 12);
        memcpy(v + 4, data + off, (size_t)len);
    } else {
        memcpy(v + 4, data + off, 4);
        memcpy(v + 8, &zero, 4);
        memcpy(v + 12, &o, 4);
    }
}

/* Total bytes of the valid rows' strings. Views may share bytes (a gather repeats one
 * long string many times), so the data buffers' sizes are no bound: outputs that copy
 * strings are sized by this. */
int64_t ks_view_bytes(int64_t n, const ks_view *in) {
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!view_valid(in, i)) continue;
        int32_t l;
        memcpy(&l, in->views + 16 * i, 4);
        total += l;
    }
    return total;
}

/* ------------------------------------------------------------------------------------ */
/* Emails                                                                               */
/* ------------------------------------------------------------------------------------ */

/* Character classes of emails.py's _VALID_ASCII, over lowercased ASCII. */
#define C_ATOM 1   /* [a-z0-9!#$%&'*+/=?^_`{|}~-] */
#define C_ALNUM 2  /* [a-z0-9] */
#define C_ALPHA 4  /* [a-z] */
#define C_LABEL 8  /* [a-z0-9-] */
#define C_SLOW 16  /* non-ASCII, ':' and '>': the whole row takes the polars path */
static uint8_t CLASS[256];
static uint8_t LOWER[256];
static int class_ready = 0;

static void init_classes(void) {
    if (class_ready) return;
    const char *specials = "!#$%&'*+/=?^_`{|}~-";
    for (int c = 'a'; c <= 'z'; c++) CLASS[c] |= C_ATOM | C_ALNUM | C_ALPHA | C_LABEL;
    for (int c = '0'; c <= '9'; c++) CLASS[c] |= C_ATOM | C_ALNUM | C_LABEL;
    for (const char *p = specials; *p; p++) CLASS[(uint8_t)*p] |= C_ATOM;
    CLASS['-'] |= C_LABEL;
    for (int c = 0x80; c < 0x100; c++) CLASS[c] |= C_SLOW;
    CLASS[':'] |= C_SLOW;
    CLASS['>'] |= C_SLOW;
    for (int c = 0; c < 0x100; c++) LOWER[c] = (uint8_t)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    class_ready = 1;
}

/* emails.py's _TRIM, ASCII part (the rest is non-ASCII and takes the slow path). */
static inline int is_trim(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0x0b || c == 0x0c;
}

/* True only when s matches ^ATOM+(\.ATOM+)*@(LABEL\.)+TLD$ and the length limits
 * (<= 254 characters, local part <= 64). False means "not sure": the caller checks
 * such rows with the regex path, which also names the rule. */
static int email_ok(const uint8_t *s, int64_t len) {
    if (len > 254) return 0;
    int64_t at = -1;
    for (int64_t i = 0; i < len; i++) {
        if (s[i] == '@') {
            if (at >= 0) return 0;
            at = i;
        }
    }
    if (at <= 0 || at > 64 || at == len - 1) return 0;
    /* local part: atoms separated by single dots */
    int prev_dot = 1;
    for (int64_t i = 0; i < at; i++) {
        uint8_t c = s[i];
        if (c == '.') {
            if (prev_dot) return 0;
            prev_dot = 1;
        } else if (CLASS[c] & C_ATOM) {
            prev_dot = 0;
        } else {
            return 0;
        }
    }
    if (prev_dot) return 0;
    /* domain: at least two labels of 1..63 [a-z0-9-], alnum at both ends; the last
     * (TLD) starts with a letter */
    int64_t start = at + 1, labels = 0, last_start = start;
    for (int64_t i = start; i <= len; i++) {
        if (i == len || s[i] == '.') {
            int64_t l = i - start;
            if (l < 1 || l > 63) return 0;
            if (!(CLASS[s[start]] & C_ALNUM) || !(CLASS[s[i - 1]] & C_ALNUM)) return 0;
            labels++;
            last_start = start;
            start = i + 1;
        } else if (!(CLASS[s[i]] & C_LABEL)) {
            return 0;
        }
    }
    if (labels < 2) return 0;
    return (CLASS[s[last_start]] & C_ALPHA) != 0;
}

/*
 * Trim (ASCII), lowercase and check each address. status per row:
 *   0 valid (out holds the normalised address), 1 check with the regex path (out holds
 *   the trimmed, lowercased text), 2 take the whole slow path (non-ASCII, or ':' / '>'
 *   for mailto: and Name <addr> forms; out empty), 3 null (out empty).
 * out_data needs as many bytes as the input strings; out_views 16 bytes a row.
 * Returns the number of rows with status 0, or -1 if out_cap bytes would not do.
 */
int64_t ks_emails(int64_t n, const ks_view *in, uint8_t *out_views, uint8_t *out_data,
                  int64_t out_cap, uint8_t *status) {
    init_classes();
    int64_t pos = 0, good = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!view_valid(in, i)) {
            status[i] = 3;
            put_view(out_views, i, out_data, pos, 0);
            continue;
        }
        int64_t a = 0, b;
        const uint8_t *s = view_get(in, i, &b);
        if (pos + b > out_cap) return -1; /* the caller sized the output wrongly */
        /* one pass: lowercase into the output while collecting the character classes */
        uint8_t *o = out_data + pos, seen = 0;
        for (int64_t k = 0; k < b; k++) {
            seen |= CLASS[s[k]];
            o[k] = LOWER[s[k]];
        }
        if (seen & C_SLOW) {
            status[i] = 2;
            put_view(out_views, i, out_data, pos, 0);
            continue;
        }
        while (a < b && is_trim(o[a])) a++;
        while (b > a && is_trim(o[b - 1])) b--;
        if (a) memmove(o, o + a, (size_t)(b - a));
        int64_t len = b - a;
        int ok = email_ok(o, len);
        status[i] = ok ? 0 : 1;
        good += ok;
        put_view(out_views, i, out_data, pos, len);
        pos += len;
    }
    return good;
}

/* ------------------------------------------------------------------------------------ */
/* Distinct values                                                                      */
/* ------------------------------------------------------------------------------------ */

/*
 * Numbers each row's value by first appearance: codes[i] = the value's number, or the
 * count of distinct values for null rows (one past the last), and first_rows[d] = the
 * row where value d first appears. Returns the count, or -1 when there are more than
 * max_distinct values (the caller then works per row) or memory runs out. For columns
 * that repeat a few values millions of times (event names): checked once per value.
 */
int64_t ks_distinct(int64_t n, const ks_view *in, int64_t max_distinct, uint32_t *codes,
                    int64_t *first_rows) {
    uint64_t cap = 16;
    while (cap < (uint64_t)max_distinct * 2 + 2) cap *= 2;
    int64_t *table = malloc(cap * sizeof(int64_t)); /* distinct number, -1 empty */
    uint64_t *hashes = malloc((size_t)(max_distinct + 1) * sizeof(uint64_t));
    if (!table || !hashes) {
        free(table);
        free(hashes);
        return -1;
    }
    for (uint64_t k = 0; k < cap; k++) table[k] = -1;
    int64_t count = 0;
    uint32_t *nulls = NULL; /* rows to point at the null code once the count is known */
    int64_t n_nulls = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!view_valid(in, i)) {
            if (!nulls) nulls = malloc((size_t)n * sizeof(uint32_t));
            if (!nulls) {
                count = -1;
                break;
            }
            nulls[n_nulls++] = (uint32_t)i;
            continue;
        }
        int64_t len;
        const uint8_t *v = view_get(in, i, &len);
        uint64_t h = XXH3_64bits(v, (size_t)len), k = h & (cap - 1);
        for (;;) {
            int64_t d = table[k];
            if (d < 0) {
                if (count == max_distinct) {
                    count = -1;
                    break;
                }
                table[k] = count;
                hashes[count] = h;
                first_rows[count] = i;
                codes[i] = (uint32_t)count++;
                break;
            }
            int64_t dlen;
            const uint8_t *dv = view_get(in, first_rows[d], &dlen);
            if (hashes[d] == h && dlen == len && memcmp(dv, v, (size_t)len) == 0) {
                codes[i] = (uint32_t)d;
                break;
            }
            k = (k + 1) & (cap - 1);
        }
        if (count < 0) break;
    }
    if (count >= 0)
        for (int64_t j = 0; j < n_nulls; j++) codes[nulls[j]] = (uint32_t)count;
    free(nulls);
    free(table);
    free(hashes);
    return count;
}

/* ------------------------------------------------------------------------------------ */
/* Timestamps                                                                           */
/* ------------------------------------------------------------------------------------ */

#define DAY_US 86400000000LL
#define ISO_WIDTH 24

/* Howard Hinnant's civil_from_days: days since 1970-01-01 → proleptic Gregorian date. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static inline void put2(uint8_t *o, unsigned v) {
    o[0] = (uint8_t)('0' + v / 10);
    o[1] = (uint8_t)('0' + v % 10);
}

/*
 * UTC microseconds → "YYYY-MM-DDTHH:MM:SS.sssZ" (24 bytes each, milliseconds truncated,
 * like strftime("%Y-%m-%dT%H:%M:%S%.3fZ")), with their views. Returns 0, or -1 when a
 * value falls outside years 1..9999 (the caller then uses strftime).
 */
int ks_iso_ms(int64_t n, const int64_t *us, uint8_t *out_views, uint8_t *out) {
    int64_t last_day = INT64_MIN;
    uint8_t date[10] = {0};
    for (int64_t i = 0; i < n; i++) {
        int64_t v = us[i];
        int64_t day = v / DAY_US;
        int64_t rem = v % DAY_US;
        if (rem < 0) {
            rem += DAY_US;
            day -= 1;
        }
        uint8_t *o = out + i * ISO_WIDTH;
        if (day != last_day) { /* rows of one day share the date: computed once */
            int64_t y;
            unsigned m, d;
            civil_from_days(day, &y, &m, &d);
            if (y < 1 || y > 9999) return -1;
            unsigned yy = (unsigned)y;
            date[0] = (uint8_t)('0' + yy / 1000);
            date[1] = (uint8_t)('0' + (yy / 100) % 10);
            date[2] = (uint8_t)('0' + (yy / 10) % 10);
            date[3] = (uint8_t)('0' + yy % 10);
            date[4] = '-';
            put2(date + 5, m);
            date[7] = '-';
            put2(date + 8, d);
            last_day = day;
        }
        memcpy(o, date, 10);
        o[10] = 'T';
        int64_t secs = rem / 1000000;
        unsigned ms = (unsigned)((rem / 1000) % 1000);
        put2(o + 11, (unsigned)(secs / 3600));
        o[13] = ':';
        put2(o + 14, (unsigned)((secs / 60) % 60));
        o[16] = ':';
        put2(o + 17, (unsigned)(secs % 60));
        o[19] = '.';
        o[20] = (uint8_t)('0' + ms / 100);
        put2(o + 21, ms % 100);
        o[23] = 'Z';
    }
    for (int64_t i = 0; i < n; i++) put_view(out_views, i, out, i * ISO_WIDTH, ISO_WIDTH);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Event keys                                                                           */
/* ------------------------------------------------------------------------------------ */

static const char HEX[] = "0123456789abcdef";

static inline void put_hex64(uint8_t *o, uint64_t v) {
    for (int k = 15; k >= 0; k--) {
        o[k] = (uint8_t)HEX[v & 15];
        v >>= 4;
    }
}

static inline uint8_t *append(uint8_t *p, const uint8_t *src, int64_t len) {
    memcpy(p, src, (size_t)len);
    return p + len;
}

/*
 * XXH3-128 of "c:<contact>" or "e:<email>", then \x1f name \x1f timestamp_iso \x1f
 * properties (keys.py). Contact rows are those whose contact validity bit is set; every
 * other column must be valid for every row not skipped (the caller checks). Writes the
 * 32-digit big-endian hex (with its views) and the high and low 64-bit halves. Rows with
 * skip[i] set (rejected rows, when skip is not NULL) are not read: their key is all zeros.
 * Returns 0, or -1 when out of memory.
 */
int ks_keys(int64_t n, const ks_view *contact, const ks_view *email, const ks_view *name,
            const ks_view *ts, const ks_view *props, const uint8_t *skip, uint8_t *hex_views,
            uint8_t *hex, uint64_t *hi, uint64_t *lo) {
    size_t cap = 4096;
    uint8_t *buf = malloc(cap);
    if (!buf) return -1;
    for (int64_t i = 0; i < n; i++) {
        if (skip && skip[i]) {
            hi[i] = lo[i] = 0;
            put_hex64(hex + i * 32, 0);
            put_hex64(hex + i * 32 + 16, 0);
            continue;
        }
        int is_contact = contact && view_valid(contact, i);
        int64_t id_len, nm_len, ts_len, p_len;
        const uint8_t *id = view_get(is_contact ? contact : email, i, &id_len);
        const uint8_t *nm = view_get(name, i, &nm_len);
        const uint8_t *tsv = view_get(ts, i, &ts_len);
        const uint8_t *pv = view_get(props, i, &p_len);
        size_t need = (size_t)(2 + id_len + 1 + nm_len + 1 + ts_len + 1 + p_len);
        if (need > cap) {
            while (cap < need) cap *= 2;
            uint8_t *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                return -1;
            }
            buf = grown;
        }
        uint8_t *p = buf;
        *p++ = is_contact ? 'c' : 'e';
        *p++ = ':';
        p = append(p, id, id_len);
        *p++ = 0x1f;
        p = append(p, nm, nm_len);
        *p++ = 0x1f;
        p = append(p, tsv, ts_len);
        *p++ = 0x1f;
        p = append(p, pv, p_len);
        XXH128_hash_t h = XXH3_128bits(buf, (size_t)(p - buf));
        hi[i] = h.high64;
        lo[i] = h.low64;
        put_hex64(hex + i * 32, h.high64);
        put_hex64(hex + i * 32 + 16, h.low64);
    }
    for (int64_t i = 0; i < n; i++) put_view(hex_views, i, hex, i * 32, 32);
    free(buf);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Properties JSON                                                                      */
/* ------------------------------------------------------------------------------------ */

/* Bytes needed for one string inside JSON quotes, escaped as polars' json_encode (serde
 * style): \" \\ \b \f \n \r \t, other control characters as \u00XX, nothing else. */
/* Extra bytes each byte takes when escaped: \" \\ \b \f \n \r \t take 1, the other control
 * characters 5 (\u00XX), everything else 0. */
static uint8_t ESCAPE_EXTRA[256];
static int escape_ready = 0;

static void init_escapes(void) {
    if (escape_ready) return;
    for (int c = 0; c < 0x20; c++) ESCAPE_EXTRA[c] = 5;
    ESCAPE_EXTRA['"'] = ESCAPE_EXTRA['\\'] = ESCAPE_EXTRA['\b'] = ESCAPE_EXTRA['\f'] = 1;
    ESCAPE_EXTRA['\n'] = ESCAPE_EXTRA['\r'] = ESCAPE_EXTRA['\t'] = 1;
    escape_ready = 1;
}

static inline int64_t escaped_len(const uint8_t *s, int64_t len) {
    int64_t out = len;
    for (int64_t k = 0; k < len; k++) out += ESCAPE_EXTRA[s[k]];
    return out;
}

/* Copies s escaped as polars' json_encode does (serde style): runs that need nothing are
 * copied whole. */
static inline uint8_t *put_escaped(uint8_t *o, const uint8_t *s, int64_t len) {
    int64_t k = 0;
    while (k < len) {
        int64_t run = k;
        while (run < len && !ESCAPE_EXTRA[s[run]]) run++;
        memcpy(o, s + k, (size_t)(run - k));
        o += run - k;
        if (run == len) break;
        uint8_t c = s[run];
        *o++ = '\\';
        switch (c) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '\b': *o++ = 'b'; break;
            case '\f': *o++ = 'f'; break;
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            default:
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = (uint8_t)HEX[c >> 4];
                *o++ = (uint8_t)HEX[c & 15];
        }
        k = run + 1;
    }
    return o;
}

/* Decimal text of an integer column's row (kind 2: int64, kind 3: uint64) into tmp
 * (>= 20 bytes); returns the length, text at tmp + 24 - length. */
static inline int64_t int_text(const ks_view *c, int32_t kind, int64_t i, uint8_t *tmp) {
    uint64_t u;
    int neg = 0;
    memcpy(&u, c->views + 8 * i, 8);
    if (kind == 2 && (int64_t)u < 0) {
        neg = 1;
        u = 0 - u;
    }
    uint8_t *end = tmp + 24, *p = end;
    do {
        *--p = (uint8_t)('0' + u % 10);
        u /= 10;
    } while (u);
    if (neg) *--p = '-';
    return end - p;
}

/*
 * One flat JSON object per row from `ncols` string columns: column j contributes
 * `key_j` (already "\"name\":", JSON-encoded by the caller, columns in key order) and its
 * value: kinds[j] == 0 strings, escaped and quoted; 1 text as is (numbers and booleans
 * the caller formatted like json_encode does); 2 / 3 int64 / uint64 values (the view's
 * `views` then points at the 8-byte values), in decimal. Null values are left out, so a
 * row without any value is "{}".
 * With out == NULL only the total size is computed (returned); otherwise the objects are
 * written with their views and the size is returned again, or -1 if they would not
 * fit in out_cap bytes.
 */
/* 16 bytes from src to dst as two unaligned words (no call: keys are short). */
static inline void copy16(uint8_t *dst, const uint8_t *src) {
    uint64_t a, b;
    memcpy(&a, src, 8);
    memcpy(&b, src + 8, 8);
    memcpy(dst, &a, 8);
    memcpy(dst + 8, &b, 8);
}

int64_t ks_json_objects(int64_t n, int64_t ncols, const ks_view *cols, const int32_t *kinds,
                        const int64_t *key_off, const uint8_t *key_data, uint8_t *out_views,
                        uint8_t *out, int64_t out_cap) {
    init_escapes();
    uint8_t tmp[24 + 16]; /* digits end at tmp + 24; 16 more so copy16 may read past them */
    int64_t pos = 0;
    if (!out) {
        for (int64_t i = 0; i < n; i++) {
            int first = 1;
            pos += 2; /* braces */
            for (int64_t j = 0; j < ncols; j++) {
                if (!view_valid(&cols[j], i)) continue;
                int64_t vlen;
                if (kinds[j] >= 2) {
                    vlen = int_text(&cols[j], kinds[j], i, tmp);
                } else {
                    const uint8_t *v = view_get(&cols[j], i, &vlen);
                    if (kinds[j] == 0) vlen = 2 + escaped_len(v, vlen);
                }
                pos += (first ? 0 : 1) + (key_off[j + 1] - key_off[j]) + vlen;
                first = 0;
            }
        }
        return pos;
    }
    uint8_t *o = out;
    for (int64_t i = 0; i < n; i++) {
        int first = 1;
        uint8_t *row = o;
        if ((o - out) + 2 > out_cap) return -1; /* the braces */
        *o++ = '{';
        for (int64_t j = 0; j < ncols; j++) {
            if (!view_valid(&cols[j], i)) continue;
            int64_t vlen;
            const uint8_t *v;
            if (kinds[j] >= 2) {
                vlen = int_text(&cols[j], kinds[j], i, tmp);
                v = tmp + 24 - vlen;
            } else {
                v = view_get(&cols[j], i, &vlen);
            }
            int64_t klen = key_off[j + 1] - key_off[j];
            /* room for this value (its worst case, else exactly) and the closing brace */
            int64_t room = out_cap - (o - out) - 1;
            int64_t head = (first ? 0 : 1) + klen;
            if (head + (kinds[j] == 0 ? 2 + 6 * vlen : vlen) > room &&
                head + (kinds[j] == 0 ? 2 + escaped_len(v, vlen) : vlen) > room)
                return -1; /* the caller sized the output wrongly */
            if (!first) *o++ = ',';
            if (klen <= 16 && out_cap - (o - out) >= 16) {
                copy16(o, key_data + key_off[j]); /* the caller pads key_data by 16 bytes */
            } else {
                memcpy(o, key_data + key_off[j], (size_t)klen);
            }
            o += klen;
            if (kinds[j] == 0) {
                *o++ = '"';
                o = put_escaped(o, v, vlen);
                *o++ = '"';
            } else if (kinds[j] >= 2 && vlen <= 16 && out_cap - (o - out) >= 16) {
                copy16(o, v); /* digits in tmp, which has 16 bytes to spare */
                o += vlen;
            } else {
                memcpy(o, v, (size_t)vlen);
                o += vlen;
            }
            first = 0;
        }
        *o++ = '}';
        put_view(out_views, i, out, row - out, o - row);
    }
    pos = o - out;
    return pos;
}

/* ------------------------------------------------------------------------------------ */
/* Seen-key set                                                                         */
/* ------------------------------------------------------------------------------------ */

/*
 * An open-addressing set of 128-bit keys (linear probing, 16 bytes a slot, at most 3/4
 * full). The top bits of `hi` (mixed) pick the home slot. (0, 0)
 * marks an empty slot; the key (0, 0) itself is kept in a flag.
 *
 * Top bits so that doubling moves old slot j to slot 2j or 2j + 1: the rehash sweeps both
 * tables in order, touching the new one's pages just ahead of use and handing the old
 * one's back to the system behind it, so growing never holds both tables whole (the
 * peak was 1.5x the table, which broke import's memory target at 10M events).
 */
typedef struct {
    uint64_t *slots; /* 2 * cap words: hi, lo; mmap'd */
    uint64_t cap, count;
    int shift; /* 64 - log2(cap) */
    int has_zero;
} ks_set;

#define PAGE 4096
#define RELEASE_STEP (2u << 20) /* old table returned in 2 MiB steps */

static uint64_t *table_alloc(uint64_t cap) {
    void *p = mmap(NULL, (size_t)cap * 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void table_free(uint64_t *slots, uint64_t cap) {
    if (slots) munmap(slots, (size_t)cap * 16);
}

void *ks_set_new(void) { return calloc(1, sizeof(ks_set)); }

void ks_set_free(void *handle) {
    ks_set *s = handle;
    if (!s) return;
    table_free(s->slots, s->cap);
    free(s);
}

uint64_t ks_set_count(void *handle) { return ((ks_set *)handle)->count; }

uint64_t ks_set_bytes(void *handle) { return ((ks_set *)handle)->cap * 16; }

/* Writes one byte per page of [*done, upto): a fresh page first read is the shared zero
 * page, so probe-then-insert took a copy-on-write fault plus a TLB shootdown across the
 * process's threads per page (9% of a validation run). */
static inline void touch_upto(uint64_t *slots, size_t *done, size_t upto) {
    volatile uint8_t *t = (volatile uint8_t *)slots;
    for (; *done < upto; *done += PAGE) t[*done] = 0;
}

/* Home slot: the top bits of hi after a Fibonacci multiply, so keys that are not random
 * in their top bits still spread (each doubling still maps slot j to 2j or 2j + 1). */
#define FIB 0x9E3779B97F4A7C15ull
static inline uint64_t home_slot(uint64_t h, int shift) { return (h * FIB) >> shift; }

static int set_grow(ks_set *s, uint64_t want) {
    uint64_t cap = s->cap ? s->cap : 1024;
    while (want * 4 > cap * 3) cap *= 2;
    if (cap == s->cap) return 0;
    uint64_t *slots = table_alloc(cap);
    if (!slots) return -1;
    int shift = 64;
    for (uint64_t c = cap; c > 1; c >>= 1) shift--;
    uint64_t mask = cap - 1;
    size_t bytes = (size_t)cap * 16, touched = 0, released = 0;
    uint8_t *old = (uint8_t *)s->slots;
    for (uint64_t j = 0; j < s->cap; j++) {
        uint64_t h = s->slots[2 * j], l = s->slots[2 * j + 1];
        if (h || l) {
            uint64_t k = home_slot(h, shift);
            /* pages up to a little past the home slot: probes run a few slots on */
            size_t want_bytes = (size_t)k * 16 + 4 * PAGE;
            touch_upto(slots, &touched, want_bytes < bytes ? want_bytes : bytes);
            while (slots[2 * k] || slots[2 * k + 1]) {
                k = (k + 1) & mask;
                if ((size_t)k * 16 >= touched) touch_upto(slots, &touched, bytes);
            }
            slots[2 * k] = h;
            slots[2 * k + 1] = l;
        }
        size_t passed = ((size_t)(j + 1) * 16) & ~(size_t)(PAGE - 1); /* whole pages */
        if (passed - released >= RELEASE_STEP) {
            madvise(old + released, passed - released, MADV_DONTNEED);
            released = passed;
        }
    }
    touch_upto(slots, &touched, bytes);
    table_free(s->slots, s->cap);
    s->slots = slots;
    s->cap = cap;
    s->shift = shift;
    return 0;
}

/* Insert (h, l) if absent; 1 when it was new, 0 when already there. */
static inline int set_put(ks_set *s, uint64_t h, uint64_t l, int insert) {
    if (!h && !l) {
        int was = s->has_zero;
        if (insert && !was) {
            s->has_zero = 1;
            s->count++;
        }
        return !was;
    }
    uint64_t mask = s->cap - 1, k = home_slot(h, s->shift);
    for (;;) {
        uint64_t sh = s->slots[2 * k], sl = s->slots[2 * k + 1];
        if (sh == h && sl == l) return 0;
        if (!sh && !sl) {
            if (insert) {
                s->slots[2 * k] = h;
                s->slots[2 * k + 1] = l;
                s->count++;
            }
            return 1;
        }
        k = (k + 1) & mask;
    }
}

/* Room for n keys now, so that as many are inserted without a doubling (each doubling
 * sweeps the whole table: half the set's time over 5M keys). -1 when out of memory. */
int ks_set_reserve(void *handle, uint64_t n) { return set_grow(handle, n); }

#define PREFETCH_AHEAD 8

/*
 * For each key in row order: first[i] = 1 and the key is remembered when it was not seen
 * before (in earlier calls or earlier rows), else 0; rows with skip[i] set (when skip is
 * not NULL) get 0 and are not looked at. Returns the number of new keys, or -1 when the
 * table cannot grow (out of memory; nothing of this call is remembered: the table is
 * grown for all n keys before the first is inserted).
 */
int64_t ks_set_mark(void *handle, int64_t n, const uint64_t *hi, const uint64_t *lo,
                    const uint8_t *skip, uint8_t *first) {
    ks_set *s = handle;
    if (set_grow(s, s->count + (uint64_t)n) != 0) return -1;
    int64_t fresh = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i + PREFETCH_AHEAD < n)
            __builtin_prefetch(&s->slots[2 * home_slot(hi[i + PREFETCH_AHEAD], s->shift)], 0, 1);
        if (skip && skip[i]) {
            first[i] = 0;
            continue;
        }
        int f = set_put(s, hi[i], lo[i], 1);
        first[i] = (uint8_t)f;
        fresh += f;
    }
    return fresh;
}

/* Membership only: found[i] = 1 when the key was remembered before. */
void ks_set_contains(void *handle, int64_t n, const uint64_t *hi, const uint64_t *lo,
                     uint8_t *found) {
    ks_set *s = handle;
    for (int64_t i = 0; i < n; i++) {
        if (!s->cap) {
            found[i] = (!hi[i] && !lo[i]) ? (uint8_t)s->has_zero : 0;
            continue;
        }
        found[i] = (uint8_t)!set_put(s, hi[i], lo[i], 0);
    }
}

/* Fills the lookup tables; the loader calls it once, before any thread uses them. */
void ks_init(void) {
    init_classes();
    init_escapes();
}
