/*
 * bench.c - shm-bench: runs the selected sections, then prints every
 * measurement (a table, or JSON lines with --json), the ratios between
 * compared measurements and the targets (PASS/MISS).
 *
 * Exit: 0 every target checked passed, 1 a target missed, 2 usage,
 * 70 a section failed (setup, server, or an op returned an error) or
 * stdout could not all be written (its help, list or results).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bench.h"
#include "text.h"
#include "../../tools/close_stdout.h"

int bench__init(bench_ctx *ctx);

typedef struct bench_section {
	const char *name;
	const char *desc;
	int (*run)(bench_ctx *ctx);
} bench_section;

static const bench_section sections[] = {
#define BENCH__SECTION_ROW(name, desc) {#name, desc, bench_section_##name},
	BENCH_SECTIONS(BENCH__SECTION_ROW)
#undef BENCH__SECTION_ROW
};
#define N_SECTIONS (sizeof sections / sizeof sections[0])

/* ------------------------------------------------------------- results */

#define MAX_RESULTS 256
#define MAX_TARGETS 128

static bench_result results[MAX_RESULTS];
static size_t n_results;
static const char *current_section = "";

typedef struct bench_tgt {
	char measurement[64];
	bench_target_kind kind;
	double value;
	char source[48];
} bench_tgt;

static bench_tgt targets[MAX_TARGETS];
static size_t n_targets;

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest sample with at least p% of samples <= it. */
static uint64_t percentile(const uint64_t *sorted, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t rank = (size_t)ceil(p / 100.0 * (double)n);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}

static bench_result *find_result(const char *name);

bench_result *bench_result_add(bench_ctx *ctx, const char *name, int procs,
                               uint64_t *samples, size_t n, double wall_s,
                               const char *ratio_vs, const char *note)
{
	bench_result *r = find_result(name);
	if (!r) {
		if (n_results == MAX_RESULTS) {
			bench_log(ctx, "too many results");
			return NULL;
		}
		r = &results[n_results++];
		memset(r, 0, sizeof *r);
		snprintf(r->name, sizeof r->name, "%s", name);
		snprintf(r->section, sizeof r->section, "%s", current_section);
		r->procs = procs;
		if (ratio_vs)
			snprintf(r->ratio_vs, sizeof r->ratio_vs, "%s", ratio_vs);
		if (note)
			snprintf(r->note, sizeof r->note, "%s", note);
	}
	uint64_t *all = realloc(r->samples, (r->n + n) * sizeof *all);
	if (!all) {
		bench_log(ctx, "%s: out of memory for samples", name);
		return NULL;
	}
	memcpy(all + r->n, samples, n * sizeof *all);
	r->samples = all;
	r->n += n;
	r->rounds++;
	r->wall_s += wall_s;
	qsort(samples, n, sizeof *samples, cmp_u64);
	bench_log(ctx, "  %s: p50 %llu ns, p99 %llu ns, %.0f ops/s", name,
	          (unsigned long long)percentile(samples, n, 50),
	          (unsigned long long)percentile(samples, n, 99),
	          wall_s > 0 ? (double)n / wall_s : 0);
	qsort(r->samples, r->n, sizeof *r->samples, cmp_u64);
	r->p50 = percentile(r->samples, r->n, 50);
	r->p99 = percentile(r->samples, r->n, 99);
	r->max = r->n ? r->samples[r->n - 1] : 0;
	r->ops_per_s = r->wall_s > 0 ? (double)r->n / r->wall_s : 0;
	return r;
}

static bench_result *find_result(const char *name)
{
	for (size_t i = 0; i < n_results; i++)
		if (!strcmp(results[i].name, name))
			return &results[i];
	return NULL;
}

void bench_target(const char *measurement, bench_target_kind kind,
                  double value, const char *source)
{
	for (size_t i = 0; i < n_targets; i++)
		if (!strcmp(targets[i].measurement, measurement) &&
		    targets[i].kind == kind && targets[i].value == value)
			return; /* declared again by a later round */
	if (n_targets == MAX_TARGETS)
		return;
	bench_tgt *t = &targets[n_targets++];
	snprintf(t->measurement, sizeof t->measurement, "%s", measurement);
	t->kind = kind;
	t->value = value;
	snprintf(t->source, sizeof t->source, "%s", source ? source : "");
}

static void compute_ratios(void)
{
	for (size_t i = 0; i < n_results; i++) {
		bench_result *r = &results[i], *vs;
		r->ratio = 0;
		if (r->ratio_vs[0] && (vs = find_result(r->ratio_vs)) && r->p50)
			r->ratio = (double)vs->p50 / (double)r->p50;
	}
}

/* Writes the target's text into buf; returns 1 pass, 0 miss, -1 n/a. */
static int check_target(const bench_tgt *t, char *buf, size_t len)
{
	const bench_result *r = find_result(t->measurement);
	switch (t->kind) {
	case BENCH_P50_MAX_NS:
		snprintf(buf, len, "p50 <= %.0f ns", t->value);
		return r ? (double)r->p50 <= t->value : -1;
	case BENCH_P99_MAX_NS:
		snprintf(buf, len, "p99 <= %.0f ns", t->value);
		return r ? (double)r->p99 <= t->value : -1;
	case BENCH_RATIO_MIN:
		snprintf(buf, len, "%.0fx+ faster than %s (p50)", t->value,
		         r && r->ratio_vs[0] ? r->ratio_vs : "?");
		return r && r->ratio > 0 ? r->ratio >= t->value : -1;
	case BENCH_RATIO_ABOVE:
		if (t->value == 1)
			snprintf(buf, len, "faster than %s (p50)",
			         r && r->ratio_vs[0] ? r->ratio_vs : "?");
		else
			snprintf(buf, len, "> %.1fx faster than %s (p50)",
			         t->value, r && r->ratio_vs[0] ? r->ratio_vs : "?");
		return r && r->ratio > 0 ? r->ratio > t->value : -1;
	case BENCH_OPS_MIN:
		snprintf(buf, len, ">= %.0f ops/s", t->value);
		return r ? r->ops_per_s >= t->value : -1;
	}
	return -1;
}

/* "0.42 us", "18.3 us", "1.20 ms" */
static void fmt_ns(uint64_t ns, char *buf, size_t len)
{
	if (ns < 1000)
		snprintf(buf, len, "%llu ns", (unsigned long long)ns);
	else if (ns < 1000000)
		snprintf(buf, len, "%.2f us", ns / 1e3);
	else if (ns < 1000000000)
		snprintf(buf, len, "%.2f ms", ns / 1e6);
	else
		snprintf(buf, len, "%.2f s", ns / 1e9);
}

static void print_table(void)
{
	printf("%-24s %5s %9s %10s %10s %12s  %s\n", "measurement", "procs",
	       "samples", "p50", "p99", "ops/s", "ratio (p50) vs");
	for (size_t i = 0; i < n_results; i++) {
		const bench_result *r = &results[i];
		char p50[32], p99[32], ratio[96] = "";
		fmt_ns(r->p50, p50, sizeof p50);
		fmt_ns(r->p99, p99, sizeof p99);
		if (r->ratio > 0)
			snprintf(ratio, sizeof ratio, "%.*fx %s",
			         r->ratio < 10 ? 2 : 1, r->ratio, r->ratio_vs);
		else if (r->ratio_vs[0])
			snprintf(ratio, sizeof ratio, "- %s (not run)",
			         r->ratio_vs);
		printf("%-24s %5d %9llu %10s %10s %12.0f  %s\n", r->name,
		       r->procs, (unsigned long long)r->n, p50, p99,
		       r->ops_per_s, ratio);
		if (r->note[0])
			printf("%-24s   (%s)\n", "", r->note);
	}
	if (n_targets)
		printf("\ntargets\n");
	for (size_t i = 0; i < n_targets; i++) {
		char what[160];
		int ok = check_target(&targets[i], what, sizeof what);
		const bench_result *r = find_result(targets[i].measurement);
		char got[64] = "";
		if (r && (targets[i].kind == BENCH_P50_MAX_NS))
			fmt_ns(r->p50, got, sizeof got);
		else if (r && targets[i].kind == BENCH_P99_MAX_NS)
			fmt_ns(r->p99, got, sizeof got);
		else if (r && targets[i].kind == BENCH_OPS_MIN)
			snprintf(got, sizeof got, "%.0f ops/s", r->ops_per_s);
		else if (r && r->ratio > 0)
			snprintf(got, sizeof got, "%.*fx", r->ratio < 10 ? 2 : 1,
			         r->ratio);
		printf("  %-4s %-22s %-40s got %-10s [%s]\n",
		       ok > 0 ? "PASS" : ok == 0 ? "MISS" : "n/a",
		       targets[i].measurement, what, got[0] ? got : "-",
		       targets[i].source);
	}
}

static void print_json(void)
{
	for (size_t i = 0; i < n_results; i++) {
		const bench_result *r = &results[i];
		json_t *o = json_object();
		json_object_set_new(o, "name", json_string(r->name));
		json_object_set_new(o, "section", json_string(r->section));
		json_object_set_new(o, "unit", json_string("ns"));
		json_object_set_new(o, "procs", json_integer(r->procs));
		json_object_set_new(o, "samples", json_integer((json_int_t)r->n));
		json_object_set_new(o, "rounds", json_integer(r->rounds));
		json_object_set_new(o, "p50", json_integer((json_int_t)r->p50));
		json_object_set_new(o, "p99", json_integer((json_int_t)r->p99));
		json_object_set_new(o, "max", json_integer((json_int_t)r->max));
		json_object_set_new(o, "ops_per_s",
		                    json_real(round(r->ops_per_s * 10) / 10));
		if (r->ratio_vs[0]) {
			json_object_set_new(o, "ratio_vs", json_string(r->ratio_vs));
			json_object_set_new(o, "ratio",
			                    r->ratio > 0
			                            ? json_real(round(r->ratio * 100) / 100)
			                            : json_null());
		}
		json_t *ts = json_array();
		for (size_t k = 0; k < n_targets; k++) {
			if (strcmp(targets[k].measurement, r->name))
				continue;
			char what[160];
			int ok = check_target(&targets[k], what, sizeof what);
			json_array_append_new(
				ts, json_pack("{s:s, s:s, s:s}", "target", what,
			                      "status",
			                      ok > 0 ? "PASS" : ok == 0 ? "MISS" : "n/a",
			                      "source", targets[k].source));
		}
		if (json_array_size(ts))
			json_object_set_new(o, "targets", ts);
		else
			json_decref(ts);
		char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
		if (s)
			puts(s);
		free(s);
		json_decref(o);
	}
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: shm-bench [--quick] [--json] [--only SECTION[,SECTION...]]\n"
	        "                 [--rounds N] [--seed N] [--keep] [--list]\n"
	        "  --quick   short run (under a minute)\n"
	        "  --rounds  run the sections N times in turn, merging the samples\n"
	        "            (default 3, 1 with --quick)\n"
	        "  --json    one JSON object per line per measurement on stdout\n"
	        "  --only    run only these sections (see --list)\n"
	        "  --seed    data set seed (default 1)\n"
	        "  --keep    keep the temp dir (environments, redis log)\n"
	        "  --list    list the sections\n"
	        "  -h, --help     this help\n"
	        "  -V, --version  print \"shm-bench VERSION\" and exit\n"
	        "Starts its own redis-server (REDIS_SERVER overrides the binary)\n"
	        "and PostgreSQL cluster (as root: as the user shmtest) in a temp\n"
	        "dir under $TMPDIR (default /tmp), removed at exit;\n"
	        "SHM_BENCH_PG=CONNINFO uses that PostgreSQL instead (schema\n"
	        "shm_bench, dropped at exit). The cleanup section uses\n"
	        "SHM_BENCH_PG, else SHM_TEST_PG, else that cluster too\n"
	        "(schema shm_bench_cleanup, dropped at its end).\n"
	        "Exit: 0 targets met, 1 a target missed, 2 usage, 70 failure\n"
	        "(a section's, or output that could not all be written).\n");
}

/* The 1/5/15-minute load averages: how busy the (shared) machine was. */
static void load_line(bench_ctx *ctx, const char *when)
{
	char buf[128] = "?";
	FILE *f = fopen("/proc/loadavg", "r");
	if (f) {
		if (!fgets(buf, sizeof buf, f))
			snprintf(buf, sizeof buf, "?");
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = 0;
	bench_log(ctx, "load average %s: %s", when, buf);
}

static void machine_line(bench_ctx *ctx)
{
	char host[128] = "?";
	gethostname(host, sizeof host);
	host[sizeof host - 1] = 0;
	char model[128] = "?";
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (f) {
		char line[256];
		while (fgets(line, sizeof line, f)) {
			char *c = strchr(line, ':');
			if (!strncmp(line, "model name", 10) && c) {
				snprintf(model, sizeof model, "%s", c + 2);
				model[strcspn(model, "\n")] = 0;
				break;
			}
		}
		fclose(f);
	}
	time_t now = time(NULL);
	char date[64];
	strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", localtime(&now));
	bench_log(ctx, "%s, %s, %ld cpus (%s), libshm %s%s, %d round%s", date,
	          host, sysconf(_SC_NPROCESSORS_ONLN), model, SHM_VERSION,
	          ctx->quick ? ", --quick" : "", ctx->rounds,
	          ctx->rounds > 1 ? "s" : "");
}

static int bench_main(int argc, char **argv)
{
	static bench_ctx ctx;
	bool only[N_SECTIONS];
	bool any_only = false;
	char shown[SHM__SHOWN_MAX];
	memset(only, 0, sizeof only);
	ctx.seed = 1;

	static const struct option longopts[] = {
		{"quick", no_argument, NULL, 'q'},
		{"json", no_argument, NULL, 'j'},
		{"only", required_argument, NULL, 'o'},
		{"seed", required_argument, NULL, 's'},
		{"keep", no_argument, NULL, 'k'},
		{"rounds", required_argument, NULL, 'r'},
		{"list", no_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "qjo:s:klhr:V", longopts, NULL)) != -1) {
		switch (c) {
		case 'q':
			ctx.quick = true;
			break;
		case 'j':
			ctx.json = true;
			break;
		case 'k':
			ctx.keep = true;
			break;
		case 'r': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*optarg < '0' || *optarg > '9' || *end || v < 1 ||
			    v > 100) {
				fprintf(stderr, "shm-bench: --rounds '%s': must be "
				        "an integer in 1..100\n",
				        shm__shown_str(optarg, shown));
				return 2;
			}
			ctx.rounds = (int)v;
			break;
		}
		case 's': {
			char *end;
			errno = 0; /* digits: strtoull takes "-1" as 2^64 - 1 */
			ctx.seed = strtoull(optarg, &end, 10);
			if (*optarg < '0' || *optarg > '9' || *end || errno) {
				fprintf(stderr, "shm-bench: --seed '%s': must be an "
				        "integer in 0..%" PRIu64 "\n",
				        shm__shown_str(optarg, shown), UINT64_MAX);
				return 2;
			}
			break;
		}
		case 'o': {
			char *list = strdup(optarg), *save = NULL;
			if (!list)
				return 70;
			for (char *tok = strtok_r(list, ",", &save); tok;
			     tok = strtok_r(NULL, ",", &save)) {
				size_t k;
				for (k = 0; k < N_SECTIONS; k++)
					if (!strcmp(tok, sections[k].name))
						break;
				if (k == N_SECTIONS) {
					fprintf(stderr,
					        "shm-bench: --only: unknown section '%s' "
					        "(see --list)\n", tok);
					free(list);
					return 2;
				}
				only[k] = any_only = true;
			}
			free(list);
			break;
		}
		case 'l':
			for (size_t k = 0; k < N_SECTIONS; k++)
				printf("%-10s %s\n", sections[k].name, sections[k].desc);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("shm-bench %s\n", SHM_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "shm-bench: unexpected argument '%s'\n(see "
		        "shm-bench --help)\n", shm__shown_str(argv[optind], shown));
		return 2;
	}

	if (ctx.rounds == 0)
		ctx.rounds = ctx.quick ? 1 : 3;
	if (bench__init(&ctx) != 0)
		return 70;
	machine_line(&ctx);
	load_line(&ctx, "at start");

	int failed = 0;
	for (ctx.round = 0; ctx.round < ctx.rounds; ctx.round++) {
		for (size_t k = 0; k < N_SECTIONS; k++) {
			if (any_only && !only[k])
				continue;
			current_section = sections[k].name;
			bench_log(&ctx, "round %d/%d, section %s: %s",
			          ctx.round + 1, ctx.rounds, sections[k].name,
			          sections[k].desc);
			if (sections[k].run(&ctx) != 0) {
				bench_log(&ctx, "section %s FAILED",
				          sections[k].name);
				failed = 1;
			}
		}
	}
	load_line(&ctx, "at end");
	bench_cleanup(&ctx);

	compute_ratios();
	if (ctx.json)
		print_json();
	else
		print_table();

	int missed = 0;
	for (size_t i = 0; i < n_targets; i++) {
		char what[160];
		if (check_target(&targets[i], what, sizeof what) == 0)
			missed = 1;
	}
	return failed ? 70 : missed ? 1 : 0;
}

int main(int argc, char **argv)
{
	return tool_close_stdout("shm-bench", bench_main(argc, argv));
}
