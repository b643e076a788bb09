#!/usr/bin/env bash
# Makes sure the PostgreSQL and Redis that parkd talks to are reachable, for a developer or CI on a
# Debian/Ubuntu machine: a service already answering is left alone (one line each); a local one
# that is installed but down is started; a missing one is installed from the distribution.
#
# Usage: deploy/local/services.sh [--create-db] [--trust-local]
#   --create-db    also create the database named in PARKD_DATABASE_URL if it is missing
#   --trust-local  allow adding password-less (trust) TCP logins from this machine to the local
#                  cluster's pg_hba.conf even when that server was already running (dev machines only;
#                  a server this script started or installed gets them without asking)
#
# Hosts and ports come from PARKD_DATABASE_URL and PARKD_REDIS_URL, with the same defaults as parkd.
set -euo pipefail

DATABASE_URL=${PARKD_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/parkd?sslmode=disable}
REDIS_URL=${PARKD_REDIS_URL:-redis://127.0.0.1:6379/0}
WAIT_SECONDS=30

create_db=0
trust_local=0
for arg in "$@"; do
	case $arg in
	--create-db) create_db=1 ;;
	--trust-local) trust_local=1 ;;
	-h | --help)
		sed -n '2,12s/^# \{0,1\}//p' "$0"
		exit 0
		;;
	*)
		echo "services.sh: unknown argument: $arg (try --help)" >&2
		exit 2
		;;
	esac
done

say() { printf '%s\n' "$*"; }
die() {
	printf 'services.sh: %s\n' "$*" >&2
	exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

as_root() {
	if ((EUID == 0)); then
		"$@"
	elif have sudo; then
		sudo "$@"
	else
		die "need root to run '$*': run this script as root or install sudo"
	fi
}

urldecode() {
	local s=${1//%/\\x}
	printf '%b' "$s"
}

# parse_url URL DEFAULT_PORT: sets url_user, url_pass, url_host, url_port, url_path (bash only).
parse_url() {
	local rest=$1 authority userinfo="" hostport
	rest=${rest#*://}
	rest=${rest%%\?*}
	rest=${rest%%#*}
	authority=${rest%%/*}
	url_path=""
	[[ $rest == */* ]] && url_path=${rest#*/}
	hostport=$authority
	if [[ $authority == *@* ]]; then
		userinfo=${authority%@*}
		hostport=${authority##*@}
	fi
	url_user=$(urldecode "${userinfo%%:*}")
	url_pass=""
	[[ $userinfo == *:* ]] && url_pass=$(urldecode "${userinfo#*:}")
	url_port=""
	if [[ $hostport == \[* ]]; then # [::1]:5432
		url_host=${hostport#\[}
		url_host=${url_host%%\]*}
		[[ $hostport == *\]:* ]] && url_port=${hostport##*\]:}
	else
		url_host=${hostport%%:*}
		[[ $hostport == *:* ]] && url_port=${hostport##*:}
	fi
	url_host=${url_host:-127.0.0.1}
	url_port=${url_port:-$2}
	[[ $url_port =~ ^[0-9]+$ ]] || die "bad port '$url_port' in $1"
}

is_local_host() {
	case $1 in
	localhost | 127.* | ::1 | 0:0:0:0:0:0:0:1) return 0 ;;
	*) return 1 ;;
	esac
}

# shellcheck disable=SC2016 # $1 and $2 are expanded by the inner bash, on purpose
tcp_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }

# wait_until NAME WHERE LOG CHECK...: polls CHECK once a second for WAIT_SECONDS.
wait_until() {
	local name=$1 where=$2 log=$3 i
	shift 3
	for ((i = 0; i < WAIT_SECONDS; i++)); do
		"$@" && return 0
		sleep 1
	done
	die "$name did not become ready at $where within ${WAIT_SECONDS}s${log:+ (see $log)}"
}

apt_updated=0
apt_install() {
	have apt-get || die "cannot install $*: no apt-get here; install them yourself (or point the PARKD_*_URL variables at running servers)"
	say "installing $* from the distribution's packages"
	if ((!apt_updated)); then
		as_root apt-get update
		apt_updated=1
	fi
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

# start_systemd_or_service UNIT: the fallback when starting a daemon directly did not work.
start_systemd_or_service() {
	if [[ -d /run/systemd/system ]] && have systemctl; then
		as_root systemctl start "$1"
	elif have service; then
		as_root service "$1" start
	else
		return 1
	fi
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

parse_url "$DATABASE_URL" 5432
pg_host=$url_host pg_port=$url_port pg_user=${url_user:-postgres} pg_db=$(urldecode "$url_path")
pg_db=${pg_db:-parkd}
[[ -n $url_pass ]] && export PGPASSWORD=$url_pass
pg_where=$pg_host:$pg_port
pg_started_here=0

pg_ready() {
	if have pg_isready; then
		pg_isready -q -h "$pg_host" -p "$pg_port"
	else
		tcp_open "$pg_host" "$pg_port"
	fi
}

# pg_answering: something is there, even if it is still starting up (pg_isready exit status 1).
pg_answering() {
	if have pg_isready; then
		local rc=0
		pg_isready -q -h "$pg_host" -p "$pg_port" || rc=$?
		((rc <= 1))
	else
		tcp_open "$pg_host" "$pg_port"
	fi
}

pg_installed() { compgen -G '/etc/postgresql/*/main/postgresql.conf' >/dev/null && have pg_ctlcluster; }

# pg_cluster_for_port: the version of the local "main" cluster configured for $pg_port, if any.
pg_cluster_for_port() {
	local conf version port
	for conf in /etc/postgresql/*/main/postgresql.conf; do
		[[ -e $conf ]] || continue
		version=${conf#/etc/postgresql/}
		version=${version%%/*}
		port=$(sed -n 's/^[[:space:]]*port[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$conf" | tail -1)
		[[ ${port:-5432} == "$pg_port" ]] && printf '%s\n' "$version"
	done | sort -V | tail -1
}

pg_cluster_version() {
	local v
	v=$(pg_cluster_for_port)
	[[ -n $v ]] || v=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -1)
	printf '%s\n' "$v"
}

pg_start() {
	local v
	v=$(pg_cluster_version)
	[[ -n $v ]] || die "PostgreSQL is installed but has no cluster under /etc/postgresql: create one with 'pg_createcluster <version> main --start'"
	if [[ -z $(pg_cluster_for_port) ]]; then
		say "postgres: no local cluster is configured for port $pg_port; starting the newest, $v/main"
	else
		say "postgres: starting cluster $v/main"
	fi
	as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start ||
		pg_answering ||
		start_systemd_or_service postgresql ||
		die "could not start PostgreSQL cluster $v/main (see /var/log/postgresql/postgresql-$v-main.log)"
}

psql_admin() { psql -X -w -q -h "$pg_host" -p "$pg_port" -U "$pg_user" -d postgres -v ON_ERROR_STOP=1 -tA "$@"; }

if pg_ready; then
	say "postgres: up at $pg_where"
else
	if pg_answering; then
		: # starting up already: just wait below
	elif ! is_local_host "$pg_host"; then
		die "postgres is not reachable at $pg_where, and that is not this machine: start it there or fix PARKD_DATABASE_URL"
	else
		if ! pg_installed; then
			apt_install postgresql postgresql-contrib
		fi
		# Installing may have started it already (Debian's postinst does where it can).
		pg_answering || pg_start
		pg_started_here=1
	fi
	v=""
	is_local_host "$pg_host" && v=$(pg_cluster_version 2>/dev/null || true)
	wait_until postgres "$pg_where" "${v:+/var/log/postgresql/postgresql-$v-main.log}" pg_ready
	say "postgres: up at $pg_where (started)"
fi

# psql and createdb are needed below, also when the server runs elsewhere.
have psql || apt_install postgresql-client

# A fresh Debian cluster asks for a password on TCP, which the default URL does not carry.
if ! err=$(psql_admin -c 'select 1' 2>&1 >/dev/null); then
	if [[ $err != *"authentication failed"* && $err != *"no password supplied"* && $err != *"pg_hba.conf"* ]]; then
		die "postgres at $pg_where refuses user $pg_user: $err"
	fi
	v=$(pg_cluster_for_port)
	hba=${v:+/etc/postgresql/$v/main/pg_hba.conf}
	if ! is_local_host "$pg_host" || [[ -z $hba || ! -e $hba ]]; then
		die "postgres at $pg_where refuses password-less login for $pg_user ($err): put the password in PARKD_DATABASE_URL"
	fi
	if ((!pg_started_here && !trust_local)); then
		die "postgres at $pg_where (cluster $v/main) refuses password-less login for $pg_user: put the password in PARKD_DATABASE_URL, or, on a dev machine only, rerun with --trust-local to add trust lines for 127.0.0.1 and ::1 to $hba"
	fi
	if as_root grep -q '# parkd dev' "$hba"; then
		die "postgres at $pg_where still refuses $pg_user although $hba has the '# parkd dev' trust lines: check that file ($err)"
	fi
	as_root sed -i \
		-e '1i # parkd dev: password-less TCP logins from this machine, added by deploy/local/services.sh; remove with: sed -i "/# parkd dev/d"' \
		-e '1i host all all 127.0.0.1/32 trust # parkd dev' \
		-e '1i host all all ::1/128 trust # parkd dev' \
		"$hba"
	as_root pg_ctlcluster "$v" main reload
	cat <<-EOF
		!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
		!!! postgres: added TRUST lines for 127.0.0.1/32 and ::1/128 at the top of
		!!!   $hba
		!!! and reloaded: anyone on this machine can now log in as any database user without a
		!!! password. Fine for a dev machine or a throwaway CI box, never for a shared server.
		!!! Undo: sudo sed -i '/# parkd dev/d' $hba && sudo pg_ctlcluster $v main reload
		!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
	EOF
	psql_ok() { psql_admin -c 'select 1' >/dev/null 2>&1; }
	wait_until "postgres (login as $pg_user after reload)" "$pg_where" "" psql_ok
fi

# The schema's exclusion constraints need btree_gist: in postgresql-contrib on older Debian, in the
# server package itself on newer ones.
if [[ -z $(psql_admin -c "select 1 from pg_available_extensions where name = 'btree_gist'") ]]; then
	is_local_host "$pg_host" || die "postgres at $pg_where lacks the btree_gist extension: install the server's contrib package there"
	num=$(psql_admin -c 'show server_version_num')
	if ((num >= 100000)); then major=$((num / 10000)); else major=$((num / 10000)).$((num / 100 % 100)); fi
	apt_install "postgresql-contrib-$major" || apt_install postgresql-contrib
	[[ -n $(psql_admin -c "select 1 from pg_available_extensions where name = 'btree_gist'") ]] ||
		die "postgres at $pg_where still lacks the btree_gist extension after installing postgresql-contrib"
	say "postgres: btree_gist installed"
fi

if ((create_db)); then
	if [[ -z $(psql_admin -v db="$pg_db" <<<"select 1 from pg_database where datname = :'db'") ]]; then
		createdb -w -h "$pg_host" -p "$pg_port" -U "$pg_user" "$pg_db"
		say "postgres: created database $pg_db"
	fi
fi

# ---------------------------------------------------------------------------------------------
# Redis

parse_url "$REDIS_URL" 6379
rd_host=$url_host rd_port=$url_port
[[ -n $url_pass ]] && export REDISCLI_AUTH=$url_pass
rd_where=$rd_host:$rd_port
rd_log=/var/log/redis/parkd-dev.log

redis_ready() {
	if have redis-cli; then
		[[ $(redis-cli -h "$rd_host" -p "$rd_port" ping 2>/dev/null) == PONG ]]
	else
		tcp_open "$rd_host" "$rd_port"
	fi
}

redis_start() {
	local bind=(127.0.0.1) version
	version=$(redis-server --version | sed -n 's/.* v=\([0-9]*\).*/\1/p')
	# "-::1" (bind to ::1 if the machine has IPv6) is understood from Redis 7 on.
	((${version:-0} >= 7)) && bind+=(-::1)
	say "redis: starting redis-server on port $rd_port (log: $rd_log)"
	as_root mkdir -p /var/lib/redis /var/log/redis
	as_root redis-server --daemonize yes --bind "${bind[@]}" --port "$rd_port" --save "" \
		--appendonly no --dir /var/lib/redis --logfile "$rd_log" ||
		start_systemd_or_service redis-server ||
		die "could not start redis-server (see $rd_log)"
}

if redis_ready; then
	say "redis: up at $rd_where"
else
	if tcp_open "$rd_host" "$rd_port"; then
		: # the port answers (loading, or a password we lack): wait below
	elif ! is_local_host "$rd_host"; then
		die "redis is not reachable at $rd_where, and that is not this machine: start it there or fix PARKD_REDIS_URL"
	else
		have redis-server || apt_install redis-server
		redis_ready || redis_start
	fi
	wait_until redis "$rd_where" "$rd_log" redis_ready
	say "redis: up at $rd_where (started)"
fi
