/* tests/test_flusher_redis.c - shm-flusher's Redis sink against a Redis
 * that refuses it: a password (requirepass), a db past its `databases`, an
 * ACL user short of a right, its connection killed mid-pipeline, a Cluster
 * node, a replica. Each runs
 * a redis-server of its own (tu_redis_start) where the shared one would not
 * do, and checks what an operator meets: the log names what was wrong and
 * the server, never the password; the records stay in the log, none is set
 * aside, and all arrive once Redis takes them. Skips without the servers
 * (tests/run.sh). */

#include "flusher_test.h"

/* A redis-server of the test's own (tu_redis_start) and an admin
 * connection to it (AUTHed with pw when given). */
typedef struct own_redis {
	char *dir;
	char url[4200]; /* unix://DIR/redis.sock */
	pid_t pid;
	redisContext *admin;
} own_redis;

static void own_start(own_redis *o, const char *const *args, const char *pw)
{
	o->dir = tu_tmpdir();
	o->pid = tu_redis_start(o->dir, args, o->url, sizeof o->url);
	o->admin = redisConnectUnix(o->url + strlen("unix://"));
	assert_non_null(o->admin);
	assert_int_equal(o->admin->err, 0);
	if (pw) {
		redisReply *r = redisCommand(o->admin, "AUTH %s", pw);
		assert_non_null(r);
		assert_int_equal(r->type, REDIS_REPLY_STATUS);
		freeReplyObject(r);
	}
}

/* o stopped and started again on its socket with args. */
static void own_restart(own_redis *o, const char *const *args)
{
	redisFree(o->admin);
	tu_redis_stop(o->pid);
	o->pid = tu_redis_start(o->dir, args, o->url, sizeof o->url);
	o->admin = redisConnectUnix(o->url + strlen("unix://"));
	assert_non_null(o->admin);
	assert_int_equal(o->admin->err, 0);
}

static void own_stop(own_redis *o)
{
	redisFree(o->admin);
	tu_redis_stop(o->pid);
	tu_rmdir(o->dir);
	free(o->dir);
}

/* The integer reply of cmd on the admin connection (-1: another reply). */
static long long own_int(own_redis *o, const char *cmd)
{
	redisReply *r = redisCommand(o->admin, cmd);
	long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
	if (r)
		freeReplyObject(r);
	return v;
}

/* Runs cmd on the admin connection; asserts it is not an error. */
static void own_cmd(own_redis *o, const char *cmd)
{
	redisReply *r = redisCommand(o->admin, cmd);
	assert_non_null(r);
	if (r->type == REDIS_REPLY_ERROR)
		fail_msg("%s: %s", cmd, r->str);
	freeReplyObject(r);
}

static uint64_t dead_letters(const char *dir)
{
	shm_env *env = tu_open(dir, NULL);
	shm_info in;
	assert_int_equal(shm_env_info(env, &in), 0);
	shm_env_close(env);
	return in.dead_letters;
}

/* The flusher's log has a line with both a and b. */
static bool log_has_both(const char *dir, const char *a, const char *b)
{
	char path[4096], line[8192];
	bool found = false;

	snprintf(path, sizeof path, "%s.flusher.log", dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof line, f))
		found = strstr(line, a) && strstr(line, b);
	fclose(f);
	return found;
}

/*
 * A password alone in the URL (unix://:PASSWORD@/path), against a Redis
 * with requirepass: a wrong password, none, or a Redis too hung to answer
 * the AUTH make --once give up (exit 3), the log naming the refusal and the
 * server, never the password, the records kept and none set aside; the
 * right one mirrors every record.
 */
static void test_password_in_the_url_is_named_never_shown(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), url[4300], server[4300], want[4400];
	ft_plan p = {.n = 30};
	own_redis o;
	const char *const args[] = {"--requirepass", "s3cr@t", NULL};

	own_start(&o, args, "s3cr@t");
	snprintf(server, sizeof server, "unix:%s", o.url + strlen("unix://"));
	assert_int_equal(ft_write(dir, 0, &p), 0);
	const char *extra[] = {"--redis", url, "--pg", "", "--once-retries",
	                       "2", "--backoff-min-ms", "10",
	                       "--redis-timeout-ms", "300", NULL};

	tu_redis_url_with_auth(o.url, "", "wr0ng-pw", url, sizeof url);
	assert_int_equal(ft_flush_once(dir, extra), FL_EXIT_SINK);
	snprintf(want, sizeof want, "AUTH on %s: WRONGPASS", server);
	assert_true(log_has_both(dir, want, "giving up"));

	snprintf(url, sizeof url, "%s", o.url); /* no password */
	assert_int_equal(ft_flush_once(dir, extra), FL_EXIT_SINK);
	snprintf(want, sizeof want, "PING on %s: NOAUTH", server);
	assert_true(log_has_both(dir, want, "giving up"));

	/* connected (the socket's backlog), then no answer to the AUTH */
	tu_redis_url_with_auth(o.url, "", "s3cr@t", url, sizeof url);
	assert_int_equal(kill(o.pid, SIGSTOP), 0);
	int rc = ft_flush_once(dir, extra);
	assert_int_equal(kill(o.pid, SIGCONT), 0);
	assert_int_equal(rc, FL_EXIT_SINK);
	snprintf(want, sizeof want, "AUTH on %s: timed out", server);
	assert_true(log_has_both(dir, want, "giving up"));
	assert_int_equal(own_int(&o, "DBSIZE"), 0);
	assert_int_equal(dead_letters(dir), 0);

	assert_int_equal(ft_flush_once(dir, extra), 0);
	assert_int_equal(own_int(&o, "DBSIZE"), 30);
	assert_int_equal(dead_letters(dir), 0);
	assert_false(ft_log_mentions(dir, "wr0ng-pw"));
	assert_false(ft_log_mentions(dir, "s3cr@t"));
	own_stop(&o);
	ft_rmdir(dir);
	free(dir);
}

/*
 * A db past the server's `databases` (redis-url ?db=20, 16 databases): the
 * daemon logs the refused SELECT naming the db and the server, applies
 * nothing, sets nothing aside and keeps retrying; the server restarted
 * with 32 databases, every record reaches db 20 and the log says the sink
 * is back.
 */
static void test_select_past_the_servers_databases_is_retried(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), url[4300], want[4400];
	ft_plan p = {.n = 30};
	own_redis o;
	const char *const sixteen[] = {"--databases", "16", NULL};
	const char *const more[] = {"--databases", "32", NULL};

	own_start(&o, sixteen, NULL);
	snprintf(url, sizeof url, "%s?db=20", o.url);
	assert_int_equal(ft_write(dir, 0, &p), 0);
	const char *extra[] = {"--redis", url, "--pg", "", "--backoff-min-ms",
	                       "10", "--backoff-max-ms", "200", NULL};
	pid_t fl = ft_spawn_flusher(dir, extra);
	snprintf(want, sizeof want, "SELECT 20 on unix:%s: ERR DB index is "
	         "out of range", o.url + strlen("unix://"));
	assert_true(ft_log_waits_for(dir, want, 5000));
	tu_sleep_ms(300); /* retries meanwhile */
	assert_true(ft_log_count(dir, want) >= 2);
	assert_int_equal(kill(fl, 0), 0);
	assert_int_equal(own_int(&o, "DBSIZE"), 0);

	own_restart(&o, more);
	shm_env *env = tu_open(dir, NULL);
	uint64_t last = ft_meta(env, "next_seq") - 1;
	assert_int_equal(ft_wait_meta(env, "sink.redis.applied", last, 10000),
	                 last);
	shm_env_close(env);
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);
	assert_true(ft_log_mentions(dir, "redis: back after"));
	assert_int_equal(own_int(&o, "DBSIZE"), 0); /* db 0 */
	redisReply *r = redisCommand(o.admin, "SELECT 20");
	assert_non_null(r);
	freeReplyObject(r);
	assert_int_equal(own_int(&o, "DBSIZE"), 30);
	assert_int_equal(dead_letters(dir), 0);
	own_stop(&o);
	ft_rmdir(dir);
	free(dir);
}

/* The id of the client blocked in a SET (CLIENT PAUSE WRITE), 0 if none. */
static long long blocked_setter(own_redis *o)
{
	redisReply *r = redisCommand(o->admin, "CLIENT LIST");
	long long id = 0;

	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	for (char *line = strtok(r->str, "\n"); line && !id;
	     line = strtok(NULL, "\n"))
		if (strstr(line, " flags=b") && strstr(line, " cmd=set "))
			id = atoll(line + strlen("id="));
	freeReplyObject(r);
	return id;
}

/*
 * The sink's connection killed (CLIENT KILL from another client) while the
 * sink waits for its pipeline's replies: Redis was holding the batch's
 * first SET (CLIENT PAUSE WRITE), so the sink had sent the whole pipeline
 * and read no reply. The lost connection is a transient failure named in
 * the log; the batch is sent again on a new connection and every record
 * arrives, none set aside, --once exiting 0.
 */
static void test_connection_killed_mid_pipeline_loses_nothing(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	ft_plan p = {.n = 30};
	own_redis o;
	long long id = 0;

	own_start(&o, NULL, NULL);
	assert_int_equal(ft_write(dir, 0, &p), 0);
	const char *extra[] = {"--once", "--redis", o.url, "--pg", "",
	                       "--backoff-min-ms", "10", NULL};
	own_int(&o, "CLIENT PAUSE 20000 WRITE");
	pid_t fl = ft_spawn_flusher(dir, extra);
	for (uint64_t end = ft_ms() + 5000; !id && ft_ms() < end;
	     tu_sleep_ms(10))
		id = blocked_setter(&o);
	assert_true(id > 0);
	char kill_cmd[64];
	snprintf(kill_cmd, sizeof kill_cmd, "CLIENT KILL ID %lld", id);
	assert_int_equal(own_int(&o, kill_cmd), 1);
	own_int(&o, "CLIENT UNPAUSE");
	assert_int_equal(ft_wait(fl), 0);
	/* lost reading the replies, not writing the pipeline */
	assert_true(log_has_both(dir, "pipeline of 30 commands: ",
	                         "retry 1 in"));
	assert_false(ft_log_mentions(dir, "commands: write: "));
	assert_int_equal(own_int(&o, "DBSIZE"), 30);
	assert_int_equal(dead_letters(dir), 0);
	shm_env *env = tu_open(dir, NULL);
	assert_int_equal(ft_meta(env, "sink.redis.applied"),
	                 ft_meta(env, "next_seq") - 1);
	assert_int_equal(tu_log_count(env), 0);
	shm_env_close(env);
	own_stop(&o);
	ft_rmdir(dir);
	free(dir);
}

/*
 * An ACL user whose keys exclude msg:* (ACL SETUSER ... ~static* +@all):
 * every SET of a message is refused (NOPERM). That is Redis's setup, not
 * the records' fault: --once retries, then gives up (exit 3) naming the
 * refusal, nothing set aside, the log kept; the ACL given msg:* too, the
 * next run mirrors every record.
 */
static void test_acl_refusing_the_keys_is_retried_not_dead_lettered(
	void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), url[4300];
	ft_plan p = {.n = 30};
	own_redis o;

	own_start(&o, NULL, NULL);
	own_cmd(&o, "ACL SETUSER flusher on >pw ~static* &* +@all");
	tu_redis_url_with_auth(o.url, "flusher", "pw", url, sizeof url);
	assert_int_equal(ft_write(dir, 0, &p), 0);
	const char *extra[] = {"--redis", url, "--pg", "", "--once-retries",
	                       "2", "--backoff-min-ms", "10", NULL};
	assert_int_equal(ft_flush_once(dir, extra), FL_EXIT_SINK);
	assert_true(log_has_both(dir, "redis: NOPERM", "giving up"));
	assert_false(ft_log_mentions(dir, "dead letter"));
	assert_int_equal(own_int(&o, "DBSIZE"), 0);
	assert_int_equal(dead_letters(dir), 0);
	shm_env *env = tu_open(dir, NULL);
	assert_int_equal(tu_log_count(env), 30);
	shm_env_close(env);

	own_cmd(&o, "ACL SETUSER flusher ~msg:*");
	assert_int_equal(ft_flush_once(dir, extra), 0);
	assert_int_equal(own_int(&o, "DBSIZE"), 30);
	assert_int_equal(dead_letters(dir), 0);
	own_stop(&o);
	ft_rmdir(dir);
	free(dir);
}

/*
 * A Redis that does not know SET (rename-command SET ""): every SET gets
 * "ERR unknown command". That says nothing of the record; setting each
 * record aside would empty the log into dead letters (it did: all 30, and
 * --once exited 0). It is retried as an outage: --once gives up (exit 3)
 * naming the reply, nothing set aside; with SET back, all 30 arrive.
 */
static void test_unknown_command_is_retried_not_dead_lettered(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir();
	ft_plan p = {.n = 30};
	own_redis o;
	const char *const no_set[] = {"--rename-command", "SET", "", NULL};

	own_start(&o, no_set, NULL);
	assert_int_equal(ft_write(dir, 0, &p), 0);
	const char *extra[] = {"--redis", o.url, "--pg", "", "--once-retries",
	                       "2", "--backoff-min-ms", "10", NULL};
	assert_int_equal(ft_flush_once(dir, extra), FL_EXIT_SINK);
	assert_true(log_has_both(dir, "redis: ERR unknown command 'SET'",
	                         "giving up"));
	assert_int_equal(dead_letters(dir), 0);
	shm_env *env = tu_open(dir, NULL);
	assert_int_equal(tu_log_count(env), 30);
	shm_env_close(env);

	own_restart(&o, NULL);
	assert_int_equal(ft_flush_once(dir, extra), 0);
	assert_int_equal(own_int(&o, "DBSIZE"), 30);
	assert_int_equal(dead_letters(dir), 0);
	own_stop(&o);
	ft_rmdir(dir);
	free(dir);
}

/*
 * Over TCP, the log names the server as host:port, with the address a
 * host name resolved to: a refused AUTH ("AUTH on localhost:P
 * (127.0.0.1): WRONGPASS", "AUTH on 127.0.0.1:P: ...") as a refused
 * connect ("connect localhost:P (127.0.0.1): Connection refused"); the
 * right password through the name mirrors every record.
 */
static void test_tcp_server_is_named_with_its_address(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), url[256], want[512], port[16];
	ft_plan p = {.n = 10};
	own_redis o;
	const char *extra[] = {"--redis", url, "--pg", "", "--once-retries",
	                       "1", NULL};

	snprintf(port, sizeof port, "%d", tu_free_port());
	const char *const args[] = {"--port", port, "--bind", "127.0.0.1",
	                            "--requirepass", "s3cr@t", NULL};
	own_start(&o, args, "s3cr@t");
	assert_int_equal(ft_write(dir, 0, &p), 0);
	const char *hosts[] = {"127.0.0.1", "localhost"};
	for (int i = 0; i < 2; i++) {
		const char *via = i ? " (127.0.0.1)" : "";
		snprintf(url, sizeof url, "redis://:wr0ng@%s:%s", hosts[i], port);
		assert_int_equal(ft_flush_once(dir, extra), FL_EXIT_SINK);
		snprintf(want, sizeof want, "AUTH on %s:%s%s: WRONGPASS",
		         hosts[i], port, via);
		assert_true(ft_log_mentions(dir, want));
	}
	snprintf(url, sizeof url, "redis://:s3cr@t@localhost:%s", port);
	assert_int_equal(ft_flush_once(dir, extra), 0);
	assert_int_equal(own_int(&o, "DBSIZE"), 10);
	own_stop(&o);
	assert_int_equal(ft_write(dir, 1, &p), 0); /* records to send */
	for (int i = 0; i < 2; i++) {
		const char *via = i ? " (127.0.0.1)" : "";
		snprintf(url, sizeof url, "redis://%s:%s", hosts[i], port);
		assert_int_equal(ft_flush_once(dir, extra), FL_EXIT_SINK);
		snprintf(want, sizeof want, "connect %s:%s%s: Connection "
		         "refused", hosts[i], port, via);
		assert_true(ft_log_mentions(dir, want));
	}
	assert_false(ft_log_mentions(dir, "wr0ng"));
	assert_false(ft_log_mentions(dir, "s3cr@t"));
	ft_rmdir(dir);
	free(dir);
}

/* n distinct loopback TCP ports nobody listens on now. */
static void free_ports(int *port, int n)
{
	for (int i = 0; i < n; i++) {
		bool again;
		do {
			port[i] = tu_free_port();
			again = false;
			for (int j = 0; j < i; j++)
				again = again || port[j] == port[i];
		} while (again);
	}
}

/* o started listening on 127.0.0.1:port too, with args after. */
static void own_start_tcp(own_redis *o, int port, const char *const *args)
{
	char p[16];
	const char *argv[16] = {"--port", p, "--bind", "127.0.0.1"};
	int n = 4;

	snprintf(p, sizeof p, "%d", port);
	for (int i = 0; args && args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	own_start(o, argv, NULL);
}

/* Whether the text reply of cmd on o's admin connection has s. */
static bool own_reply_has(own_redis *o, const char *cmd, const char *s)
{
	redisReply *r = redisCommand(o->admin, cmd);
	bool has = r && r->type == REDIS_REPLY_STRING && strstr(r->str, s);
	if (r)
		freeReplyObject(r);
	return has;
}

/* The records of dir's log (their number). */
static uint64_t log_records(const char *dir)
{
	shm_env *env = tu_open(dir, NULL);
	uint64_t n = tu_log_count(env);
	shm_env_close(env);
	return n;
}

/*
 * --redis at a Redis Cluster node: shm-flusher needs a standalone primary
 * (a bust's DEL of a static's two keys is CROSSSLOT on any cluster). Not
 * the records' fault: --once retries, then gives up (exit 3) saying what
 * the server is, nothing set aside, the log kept: at the connect, INFO's
 * redis_mode; where INFO is refused (an ACL), the replies: CLUSTERDOWN from
 * a node without slots, MOVED from one whose keys are another's (they were
 * dead letters, all 30, --once exiting 0). A standalone primary then takes
 * every record.
 */
static void test_cluster_node_is_retried_not_dead_lettered(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), url[4300], want[4500], meet[128];
	ft_plan p = {.n = 30};
	own_redis a, b, plain;
	int port[4];
	const char *extra[] = {"--redis", url, "--pg", "", "--once-retries",
	                       "2", "--backoff-min-ms", "10", NULL};

	free_ports(port, 4);
	char bus[2][16];
	snprintf(bus[0], sizeof bus[0], "%d", port[1]);
	snprintf(bus[1], sizeof bus[1], "%d", port[3]);
	const char *const node_a[] = {"--cluster-enabled", "yes",
	                              "--cluster-port", bus[0], NULL};
	const char *const node_b[] = {"--cluster-enabled", "yes",
	                              "--cluster-port", bus[1], NULL};
	own_start_tcp(&a, port[0], node_a);
	own_start_tcp(&b, port[2], node_b);
	own_cmd(&a, "ACL SETUSER noinfo on >pw ~* &* +@all -info");
	assert_int_equal(ft_write(dir, 0, &p), 0);

	snprintf(url, sizeof url, "%s", a.url);
	assert_int_equal(ft_flush_once(dir, extra), FL_EXIT_SINK);
	snprintf(want, sizeof want, "--redis unix:%s: the server is a Redis "
	         "Cluster node (redis_mode:cluster); shm-flusher needs a "
	         "standalone primary", a.url + strlen("unix://"));
	assert_true(log_has_both(dir, want, "giving up"));

	tu_redis_url_with_auth(a.url, "noinfo", "pw", url, sizeof url);
	assert_int_equal(ft_flush_once(dir, extra), FL_EXIT_SINK);
	snprintf(want, sizeof want, "--redis unix:%s: the server is a Redis "
	         "Cluster node (CLUSTERDOWN Hash slot not served); "
	         "shm-flusher needs a standalone primary",
	         a.url + strlen("unix://"));
	assert_true(log_has_both(dir, want, "giving up"));

	/* every slot on b: a answers MOVED */
	snprintf(meet, sizeof meet, "CLUSTER MEET 127.0.0.1 %d %d", port[2],
	         port[3]);
	own_cmd(&a, meet);
	own_cmd(&b, "CLUSTER ADDSLOTSRANGE 0 16383");
	for (uint64_t end = ft_ms() + 20000;
	     !own_reply_has(&a, "CLUSTER INFO", "cluster_state:ok") &&
	     ft_ms() < end;)
		tu_sleep_ms(50);
	assert_true(own_reply_has(&a, "CLUSTER INFO", "cluster_state:ok"));
	assert_int_equal(ft_flush_once(dir, extra), FL_EXIT_SINK);
	snprintf(want, sizeof want, "--redis unix:%s: the server is a Redis "
	         "Cluster node (MOVED ", a.url + strlen("unix://"));
	assert_true(log_has_both(dir, want, "standalone primary; giving up"));
	assert_false(ft_log_mentions(dir, "dead letter"));
	assert_int_equal(dead_letters(dir), 0);
	assert_int_equal(log_records(dir), 30);
	assert_int_equal(own_int(&a, "DBSIZE"), 0);
	assert_int_equal(own_int(&b, "DBSIZE"), 0);

	own_start(&plain, NULL, NULL);
	snprintf(url, sizeof url, "%s", plain.url);
	assert_int_equal(ft_flush_once(dir, extra), 0);
	assert_int_equal(own_int(&plain, "DBSIZE"), 30);
	assert_int_equal(dead_letters(dir), 0);
	own_stop(&plain);
	own_stop(&b);
	own_stop(&a);
	ft_rmdir(dir);
	free(dir);
}

/* How many of writer w's first n messages o holds. */
static long long own_msgs(own_redis *o, int w, uint32_t n)
{
	long long have = 0;

	for (uint32_t i = 0; i < n; i++) {
		shm_uuid id = ft_id(w, i);
		char cmd[64] = "EXISTS msg:";
		shm_uuid_format(&id, cmd + strlen(cmd));
		have += own_int(o, cmd);
	}
	return have;
}

/*
 * --redis at a replica: at the connect, INFO's role names it and its
 * primary; a primary made a replica under a connected flusher (a
 * failover) answers READONLY. Either is retried, said, nothing set aside;
 * made a primary again (REPLICAOF NO ONE), it gets every record.
 */
static void test_replica_is_retried_not_dead_lettered(void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), url[4300], want[4500], replicaof[64];
	ft_plan p = {.n = 10};
	own_redis q, o;
	int port;

	free_ports(&port, 1);
	const char *const no_delay[] = {"--repl-diskless-sync-delay", "0",
	                                NULL};
	own_start_tcp(&q, port, no_delay);
	own_start(&o, NULL, NULL);
	snprintf(url, sizeof url, "%s", o.url);
	snprintf(replicaof, sizeof replicaof, "REPLICAOF 127.0.0.1 %d", port);
	assert_int_equal(ft_write(dir, 0, &p), 0);
	const char *once[] = {"--redis", url, "--pg", "", "--once-retries",
	                      "2", "--backoff-min-ms", "10", NULL};

	own_cmd(&o, replicaof);
	assert_int_equal(ft_flush_once(dir, once), FL_EXIT_SINK);
	snprintf(want, sizeof want, "--redis unix:%s: the server is a "
	         "replica of 127.0.0.1:%d (role:slave); shm-flusher needs a "
	         "standalone primary", o.url + strlen("unix://"), port);
	assert_true(log_has_both(dir, want, "giving up"));
	assert_int_equal(dead_letters(dir), 0);
	assert_int_equal(log_records(dir), 10);

	const char *daemon[] = {"--redis", url, "--pg", "", "--backoff-min-ms",
	                        "10", "--backoff-max-ms", "200", NULL};
	unsigned said = ft_log_count(dir, want);
	pid_t fl = ft_spawn_flusher(dir, daemon);
	for (uint64_t end = ft_ms() + 5000;
	     ft_log_count(dir, want) == said && ft_ms() < end;)
		tu_sleep_ms(20);
	assert_true(ft_log_count(dir, want) > said);
	own_cmd(&o, "REPLICAOF NO ONE");
	shm_env *env = tu_open(dir, NULL);
	uint64_t last = ft_meta(env, "next_seq") - 1;
	assert_int_equal(ft_wait_meta(env, "sink.redis.applied", last, 10000),
	                 last);
	shm_env_close(env);

	/* a failover under the flusher's connection */
	own_cmd(&o, replicaof);
	assert_int_equal(ft_write_in_child(dir, 1, &p), 0);
	snprintf(want, sizeof want, "--redis unix:%s: the server is a "
	         "read-only replica (READONLY You can't write against a read "
	         "only replica.); shm-flusher needs a standalone primary",
	         o.url + strlen("unix://"));
	assert_true(ft_log_waits_for(dir, want, 5000));
	tu_sleep_ms(200); /* retries meanwhile */
	assert_int_equal(kill(fl, 0), 0);
	assert_int_equal(dead_letters(dir), 0);
	own_cmd(&o, "REPLICAOF NO ONE");
	env = tu_open(dir, NULL);
	last = ft_meta(env, "next_seq") - 1;
	assert_int_equal(ft_wait_meta(env, "sink.redis.applied", last, 10000),
	                 last);
	shm_env_close(env);
	kill(fl, SIGTERM);
	assert_int_equal(ft_wait(fl), 0);
	assert_false(ft_log_mentions(dir, "dead letter"));
	assert_int_equal(own_msgs(&o, 1, p.n), p.n);
	assert_int_equal(dead_letters(dir), 0);
	own_stop(&o);
	own_stop(&q);
	ft_rmdir(dir);
	free(dir);
}

/*
 * A value longer than the server's proto-max-bulk-len (1 MB here; a
 * static of 1.5 MiB an application with max_content 2 MiB put): Redis
 * replies "ERR Protocol error: invalid bulk length" and closes the
 * connection, often while the pipeline is still being written. Retried
 * as an outage, it held the queue for ever (--once: exit 3, nothing
 * after it applied). It is the record's refusal: after poison-retries it
 * is a dead letter naming its size, and the records before and after it
 * arrive.
 */
static void test_value_over_proto_max_bulk_len_is_a_dead_letter(
	void **state)
{
	FT_NEED_SERVERS();
	char *dir = tu_tmpdir(), want[4500];
	ft_plan p = {.n = 10};
	own_redis o;
	const char *const small_bulk[] = {"--proto-max-bulk-len", "1mb", NULL};
	size_t big = 1536 * 1024;
	unsigned seed = 1;
	shm_options opt;
	shm_uuid web = ft_id(5, 1);

	own_start(&o, small_bulk, NULL);
	assert_int_equal(ft_write(dir, 0, &p), 0);
	shm_options_init(&opt);
	opt.max_content = 2u << 20;
	shm_env *env = tu_open(dir, &opt);
	unsigned char *content = malloc(big);
	assert_non_null(content);
	for (size_t i = 0; i < big; i++)
		content[i] = (unsigned char)rand_r(&seed); /* no LZ4 gain */
	assert_int_equal(shm_static_put(env, &web, "page/big", content, big,
	                                NULL), 0);
	assert_int_equal(shm_static_put(env, &web, "page/small", "s", 1, NULL),
	                 0);
	free(content);
	uint64_t big_seq = ft_meta(env, "next_seq") - 2;
	shm_env_close(env);
	assert_int_equal(ft_write(dir, 1, &p), 0);

	const char *extra[] = {"--redis", o.url, "--pg", "", "--poison-retries",
	                       "2", "--backoff-min-ms", "10", NULL};
	assert_int_equal(ft_flush_once(dir, extra), 0);
	snprintf(want, sizeof want, "seq %" PRIu64 " (static_put) set aside as "
	         "a dead letter: seq %" PRIu64 ": --redis unix:%s refused a "
	         "value of ", big_seq, big_seq, o.url + strlen("unix://"));
	assert_true(log_has_both(dir, want, "bytes (ERR Protocol error: "
	                         "invalid bulk length): more than its "
	                         "proto-max-bulk-len"));
	assert_int_equal(dead_letters(dir), 1);
	assert_int_equal(own_msgs(&o, 0, p.n), p.n);
	assert_int_equal(own_msgs(&o, 1, p.n), p.n);
	assert_int_equal(own_int(&o, "DBSIZE"), 2 * p.n + 2); /* page/small */
	assert_int_equal(log_records(dir), 0);
	own_stop(&o);
	ft_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_password_in_the_url_is_named_never_shown, ft_teardown),
		cmocka_unit_test_teardown(test_tcp_server_is_named_with_its_address, ft_teardown),
		cmocka_unit_test_teardown(test_select_past_the_servers_databases_is_retried, ft_teardown),
		cmocka_unit_test_teardown(test_connection_killed_mid_pipeline_loses_nothing, ft_teardown),
		cmocka_unit_test_teardown(test_acl_refusing_the_keys_is_retried_not_dead_lettered, ft_teardown),
		cmocka_unit_test_teardown(test_unknown_command_is_retried_not_dead_lettered, ft_teardown),
		cmocka_unit_test_teardown(test_cluster_node_is_retried_not_dead_lettered, ft_teardown),
		cmocka_unit_test_teardown(test_replica_is_retried_not_dead_lettered, ft_teardown),
		cmocka_unit_test_teardown(test_value_over_proto_max_bulk_len_is_a_dead_letter, ft_teardown),
	};
	return cmocka_run_group_tests(tests, ft_group_setup, NULL);
}
