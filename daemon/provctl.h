/* SPDX-License-Identifier: MIT */
/* provctl's private header: the parsed options and the helpers its command files share. */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

extern const char *arg_socket;
extern bool arg_json;
extern bool arg_pem;
extern const char *arg_since;
extern const char *arg_dir;
extern const char *arg_org;
extern const char *arg_signer_uri;    /* ca init / signer import: the signer key (pkcs11: or file:) */
extern const char *arg_pin_file;      /* its PIN: a path, or credential:NAME */
extern const char *arg_module;        /* PKCS#11 module */
extern const char *arg_root;          /* signer import: the root certificate */
extern const char *arg_out;           /* signer import: where the certificate goes */
extern const char *arg_cert;          /* signer status: the signer certificate file */
extern const char *arg_root_key;      /* signer rotate: the root's private key */
extern const char *arg_config; /* signer rotate: provd's configuration */
extern bool arg_compressed;           /* ca init: a signer within atcacert's compressed limits */
extern bool arg_no_expiry;            /* ca init: root and signer without expiry */
extern unsigned arg_signer_id;        /* ca init --compressed */
extern unsigned arg_interval_ms;
extern unsigned arg_limit;
extern unsigned arg_page;               /* devices per request; 0 = the daemon's page (1000) */
extern const char *arg_db;
extern const char *arg_until;
extern const char *arg_format;
extern int arg_timeout_ms;
extern bool arg_failed;
extern bool arg_all;

int parse_uint(const char *s, unsigned *ret);
int parse_time(const char *s, int64_t *ret);
const char *escaped(const char *s, char *buf, size_t len);
int call(cJSON *req, cJSON **ret);
double num(const cJSON *o, const char *k);
const char *str(const cJSON *o, const char *k);
void print_json(const cJSON *o);

/* provctl-daemon.c: commands that talk to provd over its control socket. */
int cmd_simple(const char *cmd);
int cmd_watch(void);
int cmd_devices(void);
int cmd_reissue(const char *serial);
int cmd_aws(int argc, char **argv);

/* provctl-ca.c: the CA and signer tooling. */
int cmd_ca(int argc, char **argv);
int cmd_signer(int argc, char **argv);

/* provctl-local.c: commands on the database file, without provd. */
int cmd_audit(int argc, char **argv);
int cmd_db(int argc, char **argv);
int aws_export_bulk(const char *path);
