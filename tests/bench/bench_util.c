/*
 * bench_util.c - shm-bench plumbing: worker processes and their samples,
 * the temp dir and its removal (also from a signal handler), the throwaway
 * redis-server, the chat-like data set.
 *
 * Invariants
 *  1. Only the main bench process removes the temp dir or stops servers:
 *     workers reset the signal handlers and leave with _exit().
 *  2. The signal path only uses async-signal-safe calls (kill, waitpid,
 *     openat, getdents64, unlinkat, close).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "bench.h"

#define BENCH_MAX_WORKERS 16
#define BENCH_SETUP_TIMEOUT_S 30

/* What the signal handler needs, set by the main process only. */
static pid_t g_main_pid;
static char g_tmpdir[256];
static volatile pid_t g_redis_pid;
static volatile pid_t g_workers[BENCH_MAX_WORKERS];

uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_log(const bench_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	(void)ctx;
	va_start(ap, fmt);
	fputs("shm-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

size_t bench_n(const bench_ctx *ctx, size_t full, size_t quick)
{
	return ctx->quick ? quick : full;
}

void bench_path(const bench_ctx *ctx, const char *name, char *out)
{
	snprintf(out, 300, "%s/%s", ctx->tmpdir, name);
}

/* ------------------------------------------------------- temp dir removal */

struct bench__dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/* Removes name (relative to dfd) and everything below it, using only
 * async-signal-safe system calls. */
static void rm_rf_at(int dfd, const char *name, int depth)
{
	if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
		return;
	if (depth > 16)
		return;
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	char buf[4096] __attribute__((aligned(8)));
	for (;;) {
		/* Removing entries while reading may skip some: reread from
		 * the start until the directory is empty. */
		bool removed = false;
		lseek(fd, 0, SEEK_SET);
		long nread;
		while ((nread = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
			for (long off = 0; off < nread;) {
				struct bench__dirent64 *d =
					(struct bench__dirent64 *)(buf + off);
				off += d->d_reclen;
				if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
					continue;
				rm_rf_at(fd, d->d_name, depth + 1);
				removed = true;
			}
		}
		if (!removed || nread < 0)
			break;
	}
	close(fd);
	unlinkat(dfd, name, AT_REMOVEDIR);
}

void bench_rm_rf(const char *path)
{
	rm_rf_at(AT_FDCWD, path, 0);
}

static void stop_pid(pid_t pid, int sig)
{
	if (pid <= 0)
		return;
	kill(pid, sig);
	for (int i = 0; i < 300; i++) { /* 3 s, then SIGKILL */
		if (waitpid(pid, NULL, WNOHANG) != 0)
			return;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void on_signal(int sig)
{
	if (getpid() == g_main_pid) {
		for (int i = 0; i < BENCH_MAX_WORKERS; i++)
			if (g_workers[i] > 0)
				kill(g_workers[i], SIGKILL);
		if (g_redis_pid > 0) {
			kill(g_redis_pid, SIGKILL);
			waitpid(g_redis_pid, NULL, 0);
		}
		if (g_tmpdir[0])
			rm_rf_at(AT_FDCWD, g_tmpdir, 0);
		static const char msg[] = "shm-bench: interrupted, cleaned up\n";
		ssize_t w = write(2, msg, sizeof msg - 1);
		(void)w;
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static bench_ctx *g_ctx;

static void at_exit_cleanup(void)
{
	if (g_ctx && getpid() == g_main_pid)
		bench_cleanup(g_ctx);
}

int bench__init(bench_ctx *ctx)
{
	const char *base = getenv("TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	snprintf(ctx->tmpdir, sizeof ctx->tmpdir, "%s/shm-bench.XXXXXX", base);
	if (!mkdtemp(ctx->tmpdir)) {
		fprintf(stderr, "shm-bench: mkdtemp %s: %s\n", ctx->tmpdir,
		        strerror(errno));
		ctx->tmpdir[0] = 0;
		return -1;
	}
	g_main_pid = getpid();
	memcpy(g_tmpdir, ctx->tmpdir, sizeof g_tmpdir);
	g_ctx = ctx;
	atexit(at_exit_cleanup);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaction(sigs[i], &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

void bench_cleanup(bench_ctx *ctx)
{
	bench_pg_stop();
	if (ctx->redis_pid > 0) {
		stop_pid(ctx->redis_pid, SIGTERM);
		ctx->redis_pid = 0;
		g_redis_pid = 0;
	}
	if (ctx->ds_ready) {
		bench_dataset_free(&ctx->ds);
		ctx->ds_ready = false;
	}
	if (ctx->tmpdir[0]) {
		if (ctx->keep)
			bench_log(ctx, "kept %s", ctx->tmpdir);
		else
			rm_rf_at(AT_FDCWD, ctx->tmpdir, 0);
		ctx->tmpdir[0] = 0;
		g_tmpdir[0] = 0;
	}
}

/* In a forked child: die with the parent, default signal handling. */
static void child_init(int deathsig)
{
	prctl(PR_SET_PDEATHSIG, deathsig);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGQUIT, SIG_DFL);
	if (getppid() != g_main_pid) /* parent died before prctl */
		_exit(1);
}

/* ------------------------------------------------------------ redis-server */

const char *bench_redis(bench_ctx *ctx)
{
	if (ctx->redis_pid > 0)
		return ctx->redis_sock;
	char log[300];
	bench_path(ctx, "redis.sock", ctx->redis_sock);
	bench_path(ctx, "redis.log", log);
	const char *server = getenv("REDIS_SERVER");
	if (!server || !*server)
		server = "redis-server";

	pid_t pid = fork();
	if (pid < 0) {
		bench_log(ctx, "fork: %s", strerror(errno));
		return NULL;
	}
	if (pid == 0) {
		child_init(SIGTERM);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execlp(server, server, "--port", "0", "--unixsocket",
		       ctx->redis_sock, "--unixsocketperm", "700", "--save", "",
		       "--appendonly", "no", "--dir", ctx->tmpdir,
		       "--daemonize", "no", "--databases", "1", (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", server, strerror(errno));
		_exit(127);
	}
	ctx->redis_pid = pid;
	g_redis_pid = pid;

	for (int i = 0; i < 500; i++) { /* 5 s */
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			ctx->redis_pid = 0;
			g_redis_pid = 0;
			bench_log(ctx, "%s exited at start (see below):", server);
			FILE *f = fopen(log, "r");
			if (f) {
				char line[512];
				while (fgets(line, sizeof line, f))
					fputs(line, stderr);
				fclose(f);
			}
			return NULL;
		}
		struct timeval tv = {0, 200 * 1000};
		redisContext *c = redisConnectUnixWithTimeout(ctx->redis_sock, tv);
		if (c && !c->err) {
			redisReply *r = redisCommand(c, "PING");
			bool ok = r && r->type == REDIS_REPLY_STATUS &&
			          !strcmp(r->str, "PONG");
			if (r)
				freeReplyObject(r);
			redisFree(c);
			if (ok)
				return ctx->redis_sock;
		} else if (c) {
			redisFree(c);
		}
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	bench_log(ctx, "redis-server did not answer PING within 5 s");
	stop_pid(pid, SIGKILL);
	ctx->redis_pid = 0;
	g_redis_pid = 0;
	return NULL;
}

/* -------------------------------------------------------------- workers */

typedef struct bench__shared {
	int ready;     /* workers past setup and warmup */
	int go;        /* set by the parent: start timing */
	int failed;    /* a worker failed */
	int pad;
	uint64_t start[BENCH_MAX_WORKERS], end[BENCH_MAX_WORKERS];
	uint64_t samples[]; /* procs * ops */
} bench__shared;

static void worker(const bench_job *job, bench__shared *sh, int proc)
{
	void *state = NULL;
	uint64_t *out = sh->samples + (size_t)proc * job->ops;
	if (job->setup && job->setup(job->arg, proc, &state) != 0)
		goto fail;
	for (size_t i = 0; i < job->warmup; i++)
		if (job->op(state, i) != 0)
			goto fail;
	__atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&sh->go, __ATOMIC_ACQUIRE)) {
		if (__atomic_load_n(&sh->failed, __ATOMIC_RELAXED))
			_exit(1);
		sched_yield();
	}
	bench_op_fn op = job->op;
	size_t base = job->warmup;
	sh->start[proc] = bench_now_ns();
	for (size_t i = 0; i < job->ops; i++) {
		uint64_t t0 = bench_now_ns();
		if (op(state, base + i) != 0)
			goto fail;
		uint64_t t1 = bench_now_ns();
		out[i] = t1 - t0;
	}
	sh->end[proc] = bench_now_ns();
	if (job->teardown)
		job->teardown(state);
	_exit(0);
fail:
	__atomic_store_n(&sh->failed, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
	fprintf(stderr, "shm-bench: %s: worker %d failed\n", job->name, proc);
	_exit(1);
}

int bench_measure(bench_ctx *ctx, const bench_job *job)
{
	int procs = job->procs;
	if (procs < 1 || procs > BENCH_MAX_WORKERS || job->ops == 0) {
		bench_log(ctx, "%s: bad job", job->name);
		return -1;
	}
	size_t total = (size_t)procs * job->ops;
	size_t size = sizeof(bench__shared) + total * sizeof(uint64_t);
	bench__shared *sh = mmap(NULL, size, PROT_READ | PROT_WRITE,
	                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		bench_log(ctx, "%s: mmap %zu bytes: %s", job->name, size,
		          strerror(errno));
		return -1;
	}
	bench_log(ctx, "%s: %d x %zu ops...", job->name, procs, job->ops);
	fflush(NULL); /* no duplicated stdio buffers in the children */

	int rc = -1, started = 0;
	for (int p = 0; p < procs; p++) {
		pid_t pid = fork();
		if (pid < 0) {
			bench_log(ctx, "fork: %s", strerror(errno));
			__atomic_store_n(&sh->failed, 1, __ATOMIC_SEQ_CST);
			goto wait;
		}
		if (pid == 0) {
			child_init(SIGKILL);
			worker(job, sh, p);
		}
		g_workers[p] = pid;
		started++;
	}
	/* Barrier: every worker set up and warmed up, then all go at once. A
	 * worker stuck in setup (a lock never released...) fails the
	 * measurement instead of hanging the bench. */
	uint64_t t_fork = bench_now_ns();
	while (__atomic_load_n(&sh->ready, __ATOMIC_ACQUIRE) < procs) {
		if (__atomic_load_n(&sh->failed, __ATOMIC_RELAXED))
			break;
		if (bench_now_ns() - t_fork > BENCH_SETUP_TIMEOUT_S * 1000000000ull) {
			bench_log(ctx, "%s: %d of %d workers not ready after %d s "
			          "(stuck in setup or warmup), killing them",
			          job->name, procs - sh->ready, procs,
			          BENCH_SETUP_TIMEOUT_S);
			for (int p = 0; p < started; p++)
				if (g_workers[p] > 0)
					kill(g_workers[p], SIGKILL);
			__atomic_store_n(&sh->failed, 1, __ATOMIC_SEQ_CST);
			break;
		}
		bool died = false;
		for (int p = 0; p < started; p++) {
			int st;
			if (g_workers[p] > 0 &&
			    waitpid(g_workers[p], &st, WNOHANG) == g_workers[p]) {
				g_workers[p] = 0;
				died = true;
			}
		}
		if (died) {
			__atomic_store_n(&sh->failed, 1, __ATOMIC_SEQ_CST);
			break;
		}
		struct timespec ts = {0, 200 * 1000};
		nanosleep(&ts, NULL);
	}
	__atomic_store_n(&sh->go, 1, __ATOMIC_RELEASE);
wait:;
	bool ok = !__atomic_load_n(&sh->failed, __ATOMIC_SEQ_CST);
	for (int p = 0; p < started; p++) {
		int st;
		if (g_workers[p] <= 0)
			continue;
		if (waitpid(g_workers[p], &st, 0) != g_workers[p] ||
		    !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			ok = false;
		g_workers[p] = 0;
	}
	if (!ok || __atomic_load_n(&sh->failed, __ATOMIC_SEQ_CST)) {
		bench_log(ctx, "%s: failed", job->name);
		goto out;
	}
	uint64_t t0 = UINT64_MAX, t1 = 0;
	for (int p = 0; p < procs; p++) {
		if (sh->start[p] < t0)
			t0 = sh->start[p];
		if (sh->end[p] > t1)
			t1 = sh->end[p];
	}
	bench_result *r = bench_result_add(ctx, job->name, procs, sh->samples,
	                                   total, (double)(t1 - t0) / 1e9,
	                                   job->ratio_vs, job->note);
	rc = r ? 0 : -1;
out:
	munmap(sh, size);
	return rc;
}

/* ---------------------------------------------------------------- data set */

typedef struct arena_block {
	struct arena_block *next;
	size_t used, cap;
	char data[];
} arena_block;

static void *arena_alloc(void **arena, size_t size)
{
	arena_block *b = *arena;
	size = (size + 7) & ~(size_t)7;
	if (!b || b->cap - b->used < size) {
		size_t cap = size > (1u << 20) ? size : (1u << 20);
		arena_block *nb = malloc(sizeof *nb + cap);
		if (!nb)
			return NULL;
		nb->next = b;
		nb->used = 0;
		nb->cap = cap;
		*arena = b = nb;
	}
	void *p = b->data + b->used;
	b->used += size;
	return p;
}

static char *arena_strdup(void **arena, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = arena_alloc(arena, n);
	if (p)
		memcpy(p, s, n);
	return p;
}

static uint64_t rnd(uint64_t *s)
{
	/* splitmix64 */
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static const char *const words[] = {
	"salut", "la", "réunion", "est", "déplacée", "à", "demain", "matin",
	"ok", "merci", "pour", "le", "café", "on", "se", "voit", "où", "?",
	"the", "build", "is", "green", "again", "ship", "it", "😀", "naïve",
	"question", "about", "the", "déjà", "vu", "page", "release", "notes",
	"j'arrive", "dans", "cinq", "minutes", "👍", "lunch", "at", "noon",
};

static const char *const emojis[] = {"❤️", "👍", "😂", "🎉"};

int bench_dataset_make(bench_dataset *ds, size_t n, uint64_t seed)
{
	memset(ds, 0, sizeof *ds);
	ds->items = calloc(n ? n : 1, sizeof *ds->items);
	if (!ds->items)
		goto oom;
	ds->n = n;
	uint64_t s = seed;
	int64_t now = shm_now_us();
	char buf[512];
	for (size_t i = 0; i < n; i++) {
		bench_item *it = &ds->items[i];
		shm_msg *m = &it->m;
		shm_uuid_v7(&m->id);
		snprintf(buf, sizeof buf, "room-%02u", (unsigned)(rnd(&s) % 50));
		m->room_id = arena_strdup(&ds->arena, buf);
		m->user_id = (int32_t)(1 + rnd(&s) % 1000);
		snprintf(buf, sizeof buf, "user%d", m->user_id);
		m->username = arena_strdup(&ds->arena, buf);

		/* Mostly short chat lines, one in five up to 400 bytes. */
		size_t want = rnd(&s) % 5 ? 20 + rnd(&s) % 100
		                          : 100 + rnd(&s) % 300;
		size_t len = 0;
		while (len < want) {
			const char *w = words[rnd(&s) % (sizeof words / sizeof *words)];
			size_t wl = strlen(w);
			if (len + wl + 1 >= sizeof buf)
				break;
			if (len)
				buf[len++] = ' ';
			memcpy(buf + len, w, wl);
			len += wl;
		}
		buf[len] = 0;
		m->content = arena_strdup(&ds->arena, buf);
		m->content_len = (uint32_t)len;

		unsigned kind = (unsigned)(rnd(&s) % 100);
		m->type = kind < 90 ? SHM_MSG_TEXT
		        : kind < 95 ? SHM_MSG_IMAGE : SHM_MSG_FILE;
		m->created_at = now - (int64_t)(n - i) * 1000;
		if (rnd(&s) % 5 == 0) {
			uint32_t k = 1 + (uint32_t)(rnd(&s) % 3);
			int32_t *mm = arena_alloc(&ds->arena, k * sizeof *mm);
			if (!mm)
				goto oom;
			for (uint32_t j = 0; j < k; j++)
				mm[j] = (int32_t)(1 + rnd(&s) % 1000);
			m->mentions = mm;
			m->n_mentions = k;
		}
		if (rnd(&s) % 7 == 0) {
			/* One or two emojis, sorted by bytes as shm.h asks. */
			uint32_t k = 1 + (uint32_t)(rnd(&s) % 2);
			shm_reaction *rs = arena_alloc(&ds->arena, k * sizeof *rs);
			if (!rs)
				goto oom;
			unsigned first = (unsigned)(rnd(&s) % 3);
			for (uint32_t j = 0; j < k; j++) {
				uint32_t nu = 1 + (uint32_t)(rnd(&s) % 3);
				int32_t *us = arena_alloc(&ds->arena, nu * sizeof *us);
				if (!us)
					goto oom;
				for (uint32_t u = 0; u < nu; u++)
					us[u] = (int32_t)(1 + u * 37 + rnd(&s) % 30);
				rs[j].emoji = emojis[first + j];
				rs[j].user_ids = us;
				rs[j].n_users = nu;
			}
			if (k == 2 && strcmp(rs[0].emoji, rs[1].emoji) > 0) {
				shm_reaction t = rs[0];
				rs[0] = rs[1];
				rs[1] = t;
			}
			m->reactions = rs;
			m->n_reactions = k;
		}
		if (m->type != SHM_MSG_TEXT) {
			shm_attachment *a = arena_alloc(&ds->arena, sizeof *a);
			if (!a)
				goto oom;
			memset(a, 0, sizeof *a);
			shm_uuid_v7(&a->id);
			char ids[37];
			shm_uuid_format(&a->id, ids);
			bool img = m->type == SHM_MSG_IMAGE;
			snprintf(buf, sizeof buf, "%s-%zu.%s", img ? "photo" : "doc",
			         i, img ? "jpg" : "pdf");
			a->filename = arena_strdup(&ds->arena, buf);
			a->content_type = img ? "image/jpeg" : "application/pdf";
			a->size = 1000 + rnd(&s) % 2000000;
			snprintf(buf, sizeof buf,
			         "https://files.example.org/%s/%s", ids, a->filename);
			a->url = arena_strdup(&ds->arena, buf);
			m->attachments = a;
			m->n_attachments = 1;
		}
		if (i > 0 && rnd(&s) % 10 == 0) {
			/* a reply in its parent's room and thread (the parent's
			 * thread, or the parent itself when it is a root), as
			 * shm_msg_put wants it */
			const shm_msg *p = &ds->items[(size_t)(rnd(&s) % i)].m;
			m->has_parent = m->has_thread = true;
			m->parent_id = p->id;
			m->thread_id = p->has_thread ? p->thread_id : p->id;
			m->room_id = p->room_id;
		}
		if (!m->room_id || !m->username || !m->content)
			goto oom;

		char ids[37];
		shm_uuid_format(&m->id, ids);
		snprintf(it->key, sizeof it->key, "msg:%s", ids);
		int rc = shm_msg_to_json(m, &it->json, &it->json_len);
		if (rc != 0) {
			fprintf(stderr, "shm-bench: shm_msg_to_json: %s: %s\n",
			        shm_strerror(rc), shm_errmsg());
			bench_dataset_free(ds);
			return -1;
		}
	}
	return 0;
oom:
	fprintf(stderr, "shm-bench: out of memory building the data set\n");
	bench_dataset_free(ds);
	return -1;
}

void bench_dataset_free(bench_dataset *ds)
{
	if (ds->items)
		for (size_t i = 0; i < ds->n; i++)
			free(ds->items[i].json);
	free(ds->items);
	arena_block *b = ds->arena;
	while (b) {
		arena_block *next = b->next;
		free(b);
		b = next;
	}
	memset(ds, 0, sizeof *ds);
}

bench_dataset *bench_data(bench_ctx *ctx)
{
	if (!ctx->ds_ready) {
		/* Same size in --quick: a smaller set would fit in the CPU caches and
		 * make --quick's L1 latencies incomparable with the full run's. */
		size_t n = 100000;
		bench_log(ctx, "building the data set (%zu messages)...", n);
		if (bench_dataset_make(&ctx->ds, n, ctx->seed) != 0)
			return NULL;
		ctx->ds_ready = true;
	}
	return &ctx->ds;
}

int bench_pg_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
	         PQresultStatus(r) == PGRES_TUPLES_OK;
	if (!ok)
		fprintf(stderr, "shm-bench: %.60s...: %s", sql,
		        PQerrorMessage(c));
	PQclear(r);
	return ok ? 0 : -1;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
	if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
		free(s);
		s = NULL;
	}
	if (s)
		s[n] = 0;
	fclose(f);
	return s;
}

char *bench_schema_sql(void)
{
	char exe[PATH_MAX], path[PATH_MAX + 32];
	const char *top = getenv("SHM_TOP");
	if (top && *top) {
		snprintf(path, sizeof path, "%s/sql/schema.sql", top);
		if (access(path, R_OK) == 0)
			return slurp(path);
	}
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	exe[n > 0 ? n : 0] = 0;
	char *slash = strrchr(exe, '/');
	if (slash)
		*slash = 0;
	snprintf(path, sizeof path, "%s/../../sql/schema.sql", exe);
	if (access(path, R_OK) == 0)
		return slurp(path);
	/* installed: PREFIX/bin/shm-bench, PREFIX/share/shm/schema.sql */
	snprintf(path, sizeof path, "%s/../share/shm/schema.sql", exe);
	if (access(path, R_OK) == 0)
		return slurp(path);
	return slurp("sql/schema.sql");
}
