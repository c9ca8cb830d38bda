/*
 * pg_row.h - a row of PostgreSQL's messages table as the seed's serde JSON,
 * built by PostgreSQL itself, for what reads messages from L3: read-through
 * (readthrough.c, rt_pg.c) and the flusher, which puts a row it kept
 * soft-deleted back into L1 (flusher/pg_deleted.c). The JSON is what
 * shm_msg_from_json reads. Not installed.
 */
#ifndef SHM_PG_ROW_H
#define SHM_PG_ROW_H

/*
 * A timestamptz column as RFC 3339 text in UTC, whatever the session's
 * TimeZone (the conninfo's options or PGTZ set it; in another zone an
 * offset may have seconds, or 9999 end in year 10000): to_json writes a
 * timestamp in ISO 8601 whatever the DateStyle. NULL stays NULL.
 */
#define SHM_PG_UTC(col) "to_json(" col " AT TIME ZONE 'UTC')#>>'{}'||'Z'"

/* The seed's SELECT, shaped as its serde JSON: one text column. */
#define SHM_PG_MSG_JSON                                                      \
	"json_build_object('id',id,'room_id',room_id,'user_id',user_id,"     \
	"'username',username,'content',content,'message_type',message_type," \
	"'created_at'," SHM_PG_UTC("created_at") ","                         \
	"'updated_at'," SHM_PG_UTC("updated_at") ",'metadata',metadata,"     \
	"'parent_id',parent_id,'thread_id',thread_id)::text"

#endif
