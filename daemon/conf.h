/* SPDX-License-Identifier: MIT */
/* provd configuration: INI file + provd.conf.d drop-ins, parsed into a fresh struct, validated whole. */
#ifndef PROVD_CONF_H
#define PROVD_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "aws-iot.h"
enum cert_format_mode {
        CERT_FORMAT_MODE_X509,          /* [profile] format = x509 */
        CERT_FORMAT_MODE_ATECC,         /* [profile] format = atecc-compressed */
};

enum cert_expiry_mode {
        CERT_EXPIRY_MODE_CLAMP,         /* [profile] expiry = clamp: never beyond the signer's notAfter */
        CERT_EXPIRY_MODE_REFUSE,        /* [profile] expiry = refuse */
};

enum thing_name_mode {
        THING_NAME_CN,
        THING_NAME_SKI,
};

struct usb_id {
        uint16_t vid;
        uint16_t pid;                   /* 0 = any product of that vendor */
};

struct slot_label {
        char *key;                      /* port path or USB bus location ("1-1.4") */
        char *label;
};

enum aws_mode {
        AWS_MODE_OFF,                   /* no AWS calls at all */
        AWS_MODE_MAR,                   /* register every device certificate (multi-account registration) */
        AWS_MODE_JITR,                  /* register the signer CA; devices register on first connect */
        AWS_MODE_JITP,                  /* JITR plus a provisioning template AWS runs on first connect */
        AWS_MODE_OFFLINE,               /* MAR's jobs queued, sent only on `provctl aws drain` */
};

/* MAR's flow: mar, and offline (which sends the same jobs later). */
static inline bool aws_mode_is_mar(enum aws_mode m) {
        return m == AWS_MODE_MAR || m == AWS_MODE_OFFLINE;
}

/* [aws]: see docs/AWS.md and packaging/provd.conf for every key. */
struct conf_aws {
        enum aws_mode mode;
        char *endpoint;                 /* control-plane URL or host; NULL: none (required unless off) */
        char *region;                   /* NULL: taken from endpoint iot.REGION.amazonaws.com */
        char *signing_service;          /* SigV4 service name, "iot" */
        char *ca_file;                  /* CA bundle for the endpoint; NULL: system store */
        char *proxy;                    /* NULL: libcurl's environment variables; "" none */
        char *credentials_file;         /* absolute, or a name in $CREDENTIALS_DIRECTORY */
        char *profile;                  /* NULL: $AWS_PROFILE, else "default" */
        unsigned timeout_ms;
        unsigned connect_timeout_ms;
        unsigned max_response;          /* bytes of response body */
        unsigned max_connections;
        bool register_with_ca;          /* MAR: RegisterCertificate with the signer CA */
        bool sni_only;                  /* JITR/JITP: certificateMode SNI_ONLY */
        char *thing_type;
        unsigned thing_attributes;      /* enum aws_attr mask */
        bool thing_attributes_set;      /* else: all five with thing_type, serial model firmware without */
        char *policy_name;
        char *policy_template;          /* path of the policy document template (MAR) */
        char *account_id;               /* ${provd:account} */
        char *jitp_template;            /* path of the provisioning template (JITP) */
        char *jitp_role_arn;
        uint32_t rate_milli[AWS_OP_MAX];  /* 0: AWS's default rate */
        uint32_t burst[AWS_OP_MAX];       /* 0: one second's worth */
        unsigned backoff_base_ms;
        unsigned backoff_max_ms;
        unsigned max_attempts;          /* tries of one step before the job is failed */
        unsigned concurrency;           /* outbox jobs in progress at once */
};

struct conf {
        /* [station] */
        char *name;
        char *state_dir;
        char *database;
        char *control_socket;
        char *control_group;
        unsigned max_ports;
        unsigned max_frame;
        unsigned workers;               /* crypto/HSM threads; 0 = number of CPUs */
        int log_level;

        /* [ports] */
        char **globs;
        size_t n_globs;
        struct usb_id *usb_ids;
        size_t n_usb_ids;
        unsigned rescan_ms;
        unsigned baud;
        unsigned max_errors;            /* framing errors before a port is given up */

        /* [slots] */
        struct slot_label *slots;
        size_t n_slots;

        /* [signer] */
        char *signer_uri;
        char *signer_cert;
        char *root_cert;
        char *signer_pin_file;
        char *signer_pin_credential;    /* systemd credential NAME holding the PIN (signer_pin_read("credential:NAME")) */

        /* [profile] */
        unsigned validity_days;         /* 0 = no well-defined expiry (99991231235959Z) */
        enum thing_name_mode thing_name;
        char *organization;
        bool reissue;
        bool lock;
        enum cert_format_mode format;
        enum cert_expiry_mode expiry;
        unsigned atecc_signer_id;       /* 0..65535: compressed form bytes 67..68 */
        unsigned atecc_template_id;     /* 0..15 */
        unsigned atecc_chain_id;        /* 0..15 */
        unsigned max_certs_per_hour;    /* 0 = unlimited; counted from the database at start */
        unsigned max_certs_per_port_per_minute; /* 0 = unlimited */
        char *serial_allowlist;         /* file of hex serials, one a line; NULL = any serial */
        char **allowed_serials;         /* its serials, lowercase, sorted (conf_load()) */
        size_t n_allowed_serials;

        /* [timeouts] (milliseconds) */
        unsigned response_ms;           /* 0 = not set; stands for each of the four below not set */
        unsigned hello_ms;              /* HELLO, PING; 0 = response_ms or 300 */
        unsigned request_ms;            /* GET_CSR with the existing key, PROVE; 0 = response_ms or 1000 */
        unsigned write_ms;              /* PUT_CERT, PUT_CONFIG, LOCK; 0 = response_ms or 2000 */
        unsigned result_ms;             /* RESULT (never retried); 0 = response_ms (at most 1000) or 500 */
        unsigned keygen_ms;
        unsigned retries;
        unsigned session_ms;
        unsigned shutdown_ms;

        /* [board] settings written with PUT_CONFIG */
        char *aws_endpoint;
        char *wifi_ssid;
        char *wifi_psk;                 /* never logged; from wifi_psk_file, or inline in a file only we read */
        char *wifi_psk_file;

        /* [database] */
        unsigned batch_max;
        unsigned batch_delay_us;
        unsigned min_free_mb;           /* below this free space on the database's filesystem no session starts */

        /* [aws] */
        struct conf_aws aws;
};

/** Fills @c with the defaults. */
void conf_init(struct conf *c);
void conf_deinit(struct conf *c);

/**
 * Parses @path and then @path.d/ *.conf in lexical order into @ret (which must
 * be conf_init()ed), then validates. On error returns -errno and a message in
 * @err (file:line: what).
 */
int conf_load(struct conf *ret, const char *path, char *err, size_t errlen);
/** The same for a string (tests, fuzzing). @name is used in messages. */
int conf_parse_string(struct conf *c, const char *text, const char *name, char *err, size_t errlen);
int conf_validate(const struct conf *c, char *err, size_t errlen);

/** "off", "mar", "jitr", "jitp". */
const char *aws_mode_to_string(enum aws_mode m);
/**
 * Reads an allow-list ([profile] serial_allowlist: hex serials, one a line,
 * '#' comments) from @f into @c (n_allowed_serials, sorted); conf_load()
 * calls it. @c->serial_allowlist names the file in messages.
 */
int conf_read_allowlist(struct conf *c, FILE *f, char *err, size_t errlen);
/** Is @serial (hex, either case) on the allow-list? Always true without one. */
bool conf_serial_allowed(const struct conf *c, const char *serial);

/**
 * Opens @path for a secret (key, PIN, PSK file): a regular file owned by us
 * and neither readable nor writable by group or others. Returns the fd,
 * -EPERM for the mode or owner, or -errno.
 */
int conf_open_secret(const char *path);

/** Label for a port: configured by path, then by USB location, else the path's last component. */
const char *conf_slot_label(const struct conf *c, const char *path, const char *usb_location);

#endif
