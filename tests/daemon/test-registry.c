/* The sandbox registry: round trips, names, uniqueness, snapshot ownership,
 * and files that are not (or no longer) a registry of ours. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "manager/daemon/daemon-int.h"
#include "manager/network.h"
#include "tests/unit/test.h"

static int count_rows(const struct sbx_record *rec, void *arg)
{
	struct sbx_record *last = arg;

	free(last->env_json);
	*last = *rec;
	last->env_json = strdup(rec->env_json);
	return 0;
}

static int count_ids(const char *id, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

struct detached_seen {
	int count;
	struct sbx_detached_row last;
};

static int count_detached(const struct sbx_detached_row *row, void *arg)
{
	struct detached_seen *seen = arg;

	seen->count++;
	seen->last = *row;
	return 0;
}

static void write_garbage(const char *path, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	char junk[8192];

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 131 + 7);
	if (fd >= 0) {
		if (write(fd, junk, len < sizeof(junk) ? len : sizeof(junk)) < 0)
			perror("write");
		close(fd);
	}
}

int main(void)
{
	char dir[] = "/tmp/hb-registry-XXXXXX", path[256], wal[300];
	struct registry *reg = NULL;
	struct sbx_record rec = { 0 }, got = { 0 };
	char user[SBX_NAME_MAX + 1];
	int n;

	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/sandboxes.db", dir);

	/* names */
	CHECK_OK(sbx_name_valid("a"));
	CHECK_OK(sbx_name_valid("web-1.dev_x"));
	CHECK_ERR(sbx_name_valid(""), -EINVAL);
	CHECK_ERR(sbx_name_valid(NULL), -EINVAL);
	CHECK_ERR(sbx_name_valid(".."), -EINVAL);
	CHECK_ERR(sbx_name_valid("../x"), -EINVAL);
	CHECK_ERR(sbx_name_valid("a/b"), -EINVAL);
	CHECK_ERR(sbx_name_valid("-rf"), -EINVAL);
	CHECK_ERR(sbx_name_valid("a b"), -EINVAL);
	CHECK_ERR(sbx_name_valid("a\nb"), -EINVAL);
	CHECK_ERR(sbx_name_valid("\xc3\xa9"), -EINVAL);
	char longname[SBX_NAME_MAX + 2];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[SBX_NAME_MAX + 1] = 0;
	CHECK_ERR(sbx_name_valid(longname), -EINVAL);
	longname[SBX_NAME_MAX] = 0;
	CHECK_OK(sbx_name_valid(longname));

	/* round trip */
	CHECK_OK(registry_open(path, &reg));
	snprintf(rec.name, sizeof(rec.name), "one");
	snprintf(rec.image, sizeof(rec.image), "base");
	memset(rec.base, 'a', OID_HEX_BYTES - 1);
	rec.state = SBX_RUNNING;
	rec.memory_bytes = 512ull << 20;
	rec.pids = 77;
	rec.cpu_millis = 1500;
	rec.network = 1;
	rec.env_json = strdup("[\"K=V\"]");
	rec.idle_timeout_s = 300;
	rec.id_base = 200000;
	rec.init_pid = 1234;
	rec.init_start = 99999999999ull;
	CHECK_OK(registry_insert(reg, &rec));
	CHECK_ERR(registry_insert(reg, &rec), -EEXIST);
	CHECK_OK(registry_load(reg, count_rows, &got));
	CHECK(strcmp(got.name, "one") == 0);
	CHECK(strcmp(got.base, rec.base) == 0);
	CHECK(got.state == SBX_RUNNING && got.memory_bytes == rec.memory_bytes);
	CHECK(got.pids == 77 && got.cpu_millis == 1500 && got.network == 1);
	CHECK(got.idle_timeout_s == 300 && got.id_base == 200000 && got.init_pid == 1234);
	CHECK(got.init_start == rec.init_start);
	CHECK(strcmp(got.env_json, "[\"K=V\"]") == 0);

	/* every network mode is kept by its name, nat too (the column's text,
	 * no migration); an unknown name (a later version's) reads as none */
	rec.network = SANDBOX_NET_NAT;
	CHECK_OK(registry_update(reg, &rec));
	CHECK_OK(registry_load(reg, count_rows, &got));
	CHECK(got.network == SANDBOX_NET_NAT);
	sqlite3 *raw;
	CHECK(sqlite3_open_v2(path, &raw, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
	CHECK(sqlite3_exec(raw, "UPDATE sandboxes SET network = 'wifi'", NULL, NULL, NULL) ==
	      SQLITE_OK);
	sqlite3_close(raw);
	CHECK_OK(registry_load(reg, count_rows, &got));
	CHECK(got.network == SANDBOX_NET_NONE);

	/* published ports round-trip in their canonical text; one this
	 * version cannot read (a later one's) is left out, not guessed */
	CHECK(got.publish_count == 0);
	CHECK_OK(nat_port_parse("8080:3000", &rec.publish[0]));
	CHECK_OK(nat_port_parse("0.0.0.0:5353:53/udp", &rec.publish[1]));
	rec.publish_count = 2;
	CHECK_OK(registry_update(reg, &rec));
	CHECK_OK(registry_load(reg, count_rows, &got));
	CHECK(got.publish_count == 2);
	char text[NAT_PORT_TEXT_MAX];
	nat_port_format(&got.publish[0], text, sizeof(text));
	CHECK(strcmp(text, "127.0.0.1:8080:3000/tcp") == 0);
	nat_port_format(&got.publish[1], text, sizeof(text));
	CHECK(strcmp(text, "0.0.0.0:5353:53/udp") == 0);
	CHECK(sqlite3_open_v2(path, &raw, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
	CHECK(sqlite3_exec(raw, "UPDATE sandboxes SET publish ="
			   " '[\"127.0.0.1:8080:3000/sctp\", \"9090:90\"]'", NULL, NULL, NULL) ==
	      SQLITE_OK);
	sqlite3_close(raw);
	CHECK_OK(registry_load(reg, count_rows, &got));
	CHECK(got.publish_count == 1 && got.publish[0].host_port == 9090 &&
	      got.publish[0].guest_port == 90 && !got.publish[0].udp);
	rec.publish_count = 0;
	rec.network = 1;
	CHECK_OK(registry_update(reg, &rec));

	/* another sandbox may not take the same id range */
	struct sbx_record two = rec;
	snprintf(two.name, sizeof(two.name), "two");
	CHECK(registry_insert(reg, &two) < 0);
	two.id_base = 200000 + SBX_ID_RANGE;
	CHECK_OK(registry_insert(reg, &two));

	rec.state = SBX_SLEEPING;
	memset(rec.latest, 'b', OID_HEX_BYTES - 1);
	CHECK_OK(registry_update(reg, &rec));
	CHECK_OK(registry_load(reg, count_rows, &got)); /* ends with "two" */
	struct sbx_record ghost = rec;
	snprintf(ghost.name, sizeof(ghost.name), "ghost");
	CHECK_ERR(registry_update(reg, &ghost), -ENOENT);

	/* snapshot ownership and users */
	CHECK_OK(registry_snapshot_add(reg, rec.latest, "one"));
	CHECK_OK(registry_snapshot_add(reg, "cccc", "one"));
	n = 0;
	CHECK_OK(registry_snapshots_of(reg, "one", count_ids, &n));
	CHECK(n == 2);
	CHECK(registry_snapshot_user(reg, rec.latest, NULL, user, sizeof(user)) == 1);
	CHECK(strcmp(user, "one") == 0);
	CHECK(registry_snapshot_user(reg, rec.latest, "one", user, sizeof(user)) == 0);
	/* "two" was created from the same base: a user of it */
	CHECK(registry_snapshot_user(reg, rec.base, "one", user, sizeof(user)) == 1);
	CHECK(strcmp(user, "two") == 0);
	CHECK_OK(registry_snapshot_set_owner(reg, "cccc", "two"));
	n = 0;
	CHECK_OK(registry_snapshots_of(reg, "two", count_ids, &n));
	CHECK(n == 1);
	CHECK_OK(registry_snapshot_delete(reg, "cccc"));

	/* detached commands: a round trip, a delete by pid, and their rows go
	 * with their sandbox's */
	struct sbx_detached_row drow = { .pid = 4242, .start = 1u << 20, .deadline_ns = 777 };
	struct detached_seen dgot = { 0 };
	snprintf(drow.log, sizeof(drow.log), "/x/logs/4242.log");
	CHECK_OK(registry_detached_add(reg, "two", &drow));
	drow.pid = 4343;
	CHECK_OK(registry_detached_add(reg, "two", &drow));
	CHECK_OK(registry_detached_add(reg, "one", &drow));
	CHECK_OK(registry_detached_of(reg, "two", count_detached, &dgot));
	CHECK(dgot.count == 2 && dgot.last.pid == 4343 && dgot.last.start == 1u << 20);
	CHECK(dgot.last.deadline_ns == 777 && strcmp(dgot.last.log, "/x/logs/4242.log") == 0);
	CHECK(registry_detached_add(reg, "ghost", &drow) < 0); /* no such sandbox */
	hb_err_clear();
	CHECK_OK(registry_detached_delete(reg, "two", 4343));
	memset(&dgot, 0, sizeof(dgot));
	CHECK_OK(registry_detached_of(reg, "two", count_detached, &dgot));
	CHECK(dgot.count == 1 && dgot.last.pid == 4242);
	CHECK_OK(registry_delete(reg, "two"));
	memset(&dgot, 0, sizeof(dgot));
	CHECK_OK(registry_detached_of(reg, "two", count_detached, &dgot));
	CHECK(dgot.count == 0);
	CHECK_OK(registry_detached_delete(reg, "one", 0));
	CHECK_OK(registry_detached_of(reg, "one", count_detached, &dgot));
	CHECK(dgot.count == 0);
	registry_close(reg);
	reg = NULL;

	/* a version 4 registry (no publish column) is brought up to date, its
	 * rows kept, publishing nothing */
	CHECK_OK(registry_open(path, &reg));
	rec.publish_count = 1;
	CHECK_OK(registry_update(reg, &rec));
	rec.publish_count = 0;
	registry_close(reg);
	reg = NULL;
	sqlite3 *v4;
	CHECK(sqlite3_open_v2(path, &v4, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
	CHECK(sqlite3_exec(v4, "ALTER TABLE sandboxes DROP COLUMN publish;"
			   " PRAGMA user_version = 4", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(v4);
	CHECK_OK(registry_open(path, &reg));
	free(got.env_json);
	memset(&got, 0, sizeof(got));
	CHECK_OK(registry_load(reg, count_rows, &got));
	CHECK(strcmp(got.name, "one") == 0 && got.publish_count == 0);
	registry_close(reg);
	reg = NULL;

	/* a version 1 registry (no detached table, no removing, disk_bytes or
	 * publish column) is brought up to date, its rows kept */
	sqlite3 *v1;
	CHECK(sqlite3_open_v2(path, &v1, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
	CHECK(sqlite3_exec(v1, "DROP TABLE detached; ALTER TABLE sandboxes DROP COLUMN removing;"
			   " ALTER TABLE sandboxes DROP COLUMN disk_bytes;"
			   " ALTER TABLE sandboxes DROP COLUMN publish;"
			   " PRAGMA user_version = 1", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(v1);
	CHECK_OK(registry_open(path, &reg));
	drow.pid = 1;
	CHECK_OK(registry_detached_add(reg, "one", &drow));
	CHECK_OK(registry_detached_delete(reg, "one", 0));
	free(got.env_json);
	memset(&got, 0, sizeof(got));
	CHECK_OK(registry_load(reg, count_rows, &got));
	CHECK(strcmp(got.name, "one") == 0 && !got.removing && got.disk_bytes == 0);
	free(got.env_json);
	/* the disk limit round-trips */
	rec.disk_bytes = 10ull << 30;
	CHECK_OK(registry_update(reg, &rec));
	memset(&got, 0, sizeof(got));
	CHECK_OK(registry_load(reg, count_rows, &got));
	CHECK(got.disk_bytes == 10ull << 30);
	free(got.env_json);
	rec.disk_bytes = 0;
	/* the removing mark round-trips */
	rec.removing = true;
	CHECK_OK(registry_update(reg, &rec));
	memset(&got, 0, sizeof(got));
	CHECK_OK(registry_load(reg, count_rows, &got));
	CHECK(got.removing);
	free(got.env_json);
	memset(&got, 0, sizeof(got));
	rec.removing = false;
	CHECK_OK(registry_update(reg, &rec));
	registry_close(reg);
	reg = NULL;

	/* reopen: rows survive */
	CHECK_OK(registry_open(path, &reg));
	free(got.env_json);
	memset(&got, 0, sizeof(got));
	CHECK_OK(registry_load(reg, count_rows, &got));
	CHECK(strcmp(got.name, "one") == 0 && got.state == SBX_SLEEPING);
	free(got.env_json);
	registry_close(reg);
	reg = NULL;

	/* a schema from the future is refused, not rewritten */
	sqlite3 *db;
	CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "PRAGMA user_version = 9", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);
	CHECK_ERR(registry_open(path, &reg), -EPROTONOSUPPORT);
	CHECK(reg == NULL);

	/* garbage and a truncated file: -EBADMSG with a message, no crash */
	snprintf(wal, sizeof(wal), "%s-wal", path);
	unlink(wal);
	write_garbage(path, 8192);
	CHECK_ERR(registry_open(path, &reg), -EBADMSG);
	CHECK(strstr(hb_errmsg(-EBADMSG), "corrupt") != NULL);
	write_garbage(path, 100);
	CHECK_ERR(registry_open(path, &reg), -EBADMSG);

	/* a row with a name that is not valid is an error, not a path */
	unlink(path);
	CHECK_OK(registry_open(path, &reg));
	snprintf(rec.name, sizeof(rec.name), "../../etc");
	CHECK_OK(registry_insert(reg, &rec));
	memset(&got, 0, sizeof(got));
	CHECK_ERR(registry_load(reg, count_rows, &got), -EBADMSG);
	free(got.env_json);
	registry_close(reg);

	/* what --publish and the API's "publish" accept, and what not */
	struct nat_port port, other;
	CHECK_OK(nat_port_parse("1:65535/tcp", &port));
	CHECK(port.host_port == 1 && port.guest_port == 65535 && !port.udp);
	CHECK(port.host_addr.s_addr == htonl(INADDR_LOOPBACK));
	/* leading zeros: the value decides, whatever the width */
	CHECK_OK(nat_port_parse("08080:000003000", &port));
	CHECK(port.host_port == 8080 && port.guest_port == 3000);
	CHECK_OK(nat_port_parse("0065535:00001/udp", &port));
	CHECK(port.host_port == 65535 && port.guest_port == 1 && port.udp);
	CHECK_OK(nat_port_parse("223.255.255.254:8080:80", &port)); /* below multicast */
	CHECK_OK(nat_port_parse("240.0.0.1:8080:80", &port)); /* above it */
	static const char *const bad[] = { "8080", "0:3000", "8080:0", "8080:65536", "8080:",
					   ":3000", "8080:3000/sctp", "8080:3000/", "x:8080:3000",
					   "::1:8080:3000", "1.2.3:8080:3000", "+80:3000",
					   "8080:3000 ", "1.2.3.4:5:6:7", "", "000:3000",
					   "8080:0065536", "8080:-1", "8080:0x50",
					   "224.0.0.1:8080:80", "239.255.255.250:1900:1900/udp",
					   "255.255.255.255:8080:80/udp" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_ERR(nat_port_parse(bad[i], &port), -EINVAL);
	CHECK_ERR(nat_port_parse(NULL, &port), -EINVAL);
	/* the same host port twice: the same address, or every address */
	CHECK_OK(nat_port_parse("0.0.0.0:8080:1", &port));
	CHECK_OK(nat_port_parse("127.0.0.1:8080:2", &other));
	CHECK(nat_port_overlaps(&port, &other));
	CHECK_OK(nat_port_parse("127.0.0.1:8080:2/udp", &other));
	CHECK(!nat_port_overlaps(&port, &other));
	CHECK_OK(nat_port_parse("10.0.0.1:8080:2", &port));
	CHECK_OK(nat_port_parse("127.0.0.1:8080:2", &other));
	CHECK(!nat_port_overlaps(&port, &other));

	/* where the nat resolv.conf is bound: through the image's link, kept
	 * inside its root, never onto the sandbox's own /dev, /proc or /sys */
	static const struct {
		const char *link, *target; /* target NULL: refused */
	} links[] = {
		{ "../run/systemd/resolve/stub-resolv.conf", "/run/systemd/resolve/stub-resolv.conf" },
		{ "../../../host/file", "/host/file" },
		{ "/run/resolvconf/resolv.conf", "/run/resolvconf/resolv.conf" },
		{ "/tmp/resolv.conf", "/tmp/resolv.conf" },
		{ "/device", "/device" },
		{ "/dev/null", NULL },
		{ "../dev/shm/resolv.conf", NULL },
		{ "/proc/sys/kernel/hostname", NULL },
		{ "../../sys", NULL },
	};
	char root[300], etc[320], conf[340], inside[PATH_MAX];
	snprintf(root, sizeof(root), "%s/root", dir);
	snprintf(etc, sizeof(etc), "%s/etc", root);
	snprintf(conf, sizeof(conf), "%s/resolv.conf", etc);
	CHECK_OK(nat_resolv_conf_target(root, inside, sizeof(inside))); /* no /etc */
	CHECK(strcmp(inside, "/etc/resolv.conf") == 0);
	CHECK(mkdir(root, 0755) == 0 && mkdir(etc, 0755) == 0);
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
		unlink(conf);
		CHECK(symlink(links[i].link, conf) == 0);
		if (links[i].target) {
			CHECK_OK(nat_resolv_conf_target(root, inside, sizeof(inside)));
			CHECK(strcmp(inside, links[i].target) == 0);
		} else {
			CHECK_ERR(nat_resolv_conf_target(root, inside, sizeof(inside)), -EINVAL);
		}
	}

	free(rec.env_json);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		perror("rm");
	TEST_MAIN_END();
}
