/* SPDX-License-Identifier: MIT */
/* AWS IoT control-plane basics: operation names, URI/query encoding, name validation, certificate and template helpers. */

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aws-iot.h"
#include "util.h"
#include "aws-iot-internal.h"

static const char *const op_names[AWS_OP_MAX] = {
        [AWS_OP_REGISTER_CERTIFICATE_WITHOUT_CA] = "RegisterCertificateWithoutCA",
        [AWS_OP_REGISTER_CERTIFICATE] = "RegisterCertificate",
        [AWS_OP_DESCRIBE_CERTIFICATE] = "DescribeCertificate",
        [AWS_OP_UPDATE_CERTIFICATE] = "UpdateCertificate",
        [AWS_OP_CREATE_THING] = "CreateThing",
        [AWS_OP_UPDATE_THING] = "UpdateThing",
        [AWS_OP_CREATE_POLICY] = "CreatePolicy",
        [AWS_OP_ATTACH_POLICY] = "AttachPolicy",
        [AWS_OP_ATTACH_THING_PRINCIPAL] = "AttachThingPrincipal",
        [AWS_OP_LIST_ATTACHED_POLICIES] = "ListAttachedPolicies",
        [AWS_OP_GET_REGISTRATION_CODE] = "GetRegistrationCode",
        [AWS_OP_REGISTER_CA_CERTIFICATE] = "RegisterCACertificate",
        [AWS_OP_DESCRIBE_CA_CERTIFICATE] = "DescribeCACertificate",
};

const char *aws_op_name(enum aws_op op) {
        return (unsigned)op < AWS_OP_MAX ? op_names[op] : "?";
}

int aws_op_from_name(const char *name) {
        for (int i = 0; i < AWS_OP_MAX; i++)
                if (streq(op_names[i], name))
                        return i;
        return -EINVAL;
}

const char *aws_class_name(enum aws_class c) {
        switch (c) {
        case AWS_OK: return "ok";
        case AWS_RETRY: return "retryable";
        case AWS_PERMANENT: return "permanent";
        case AWS_CREDENTIALS: return "credentials";
        }
        return "?";
}

void aws_request_done(struct aws_request *r) {
        if (!r)
                return;
        r->body = (free(r->body), NULL);
        r->body_len = 0;
}

/* ---- encoding ---- */

static bool unreserved(unsigned char ch) {
        return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
               ch == '-' || ch == '_' || ch == '.' || ch == '~';
}

int aws_uri_encode(const char *s, size_t len, char *buf, size_t size) {
        static const char hex[] = "0123456789ABCDEF";
        size_t o = 0;

        for (size_t i = 0; i < len; i++) {
                unsigned char ch = (unsigned char)s[i];
                if (unreserved(ch)) {
                        if (o + 1 >= size)
                                return -ENOBUFS;
                        buf[o++] = (char)ch;
                } else {
                        if (o + 3 >= size)
                                return -ENOBUFS;
                        buf[o++] = '%';
                        buf[o++] = hex[ch >> 4];
                        buf[o++] = hex[ch & 15];
                }
        }
        if (o >= size)
                return -ENOBUFS;
        buf[o] = 0;
        return (int)o;
}

int aws_path_append(char *buf, size_t size, const char *seg) {
        size_t used = strnlen(buf, size);

        /* "." and ".." would be removed by URI normalisation on either side. */
        if (!seg || !*seg || streq(seg, ".") || streq(seg, ".."))
                return -EINVAL;
        if (used + 2 > size)
                return -ENOBUFS;
        buf[used] = '/';
        int r = aws_uri_encode(seg, strlen(seg), buf + used + 1, size - used - 1);
        if (r < 0) {
                buf[used] = 0;
                return r;
        }
        return 0;
}

struct enc_param {
        char key[128];
        char value[AWS_QUERY_MAX];
};

static int cmp_param(const void *a, const void *b) {
        const struct enc_param *x = a, *y = b;
        int c = strcmp(x->key, y->key);
        return c ? c : strcmp(x->value, y->value);
}

int aws_query_build(const struct aws_query_param *params, size_t n, char *buf, size_t size) {
        _cleanup_free_ struct enc_param *e = NULL;
        size_t o = 0;
        int r;

        if (size == 0)
                return -ENOBUFS;
        buf[0] = 0;
        if (n == 0)
                return 0;
        if (n > 16)
                return -E2BIG;
        e = calloc(n, sizeof *e);
        if (!e)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (isempty(params[i].key) || !params[i].value)
                        return -EINVAL;
                r = aws_uri_encode(params[i].key, strlen(params[i].key), e[i].key, sizeof e[i].key);
                if (r < 0)
                        return r;
                r = aws_uri_encode(params[i].value, strlen(params[i].value), e[i].value, sizeof e[i].value);
                if (r < 0)
                        return r;
        }
        /* SigV4 sorts by the encoded names (byte order). */
        qsort(e, n, sizeof *e, cmp_param);
        for (size_t i = 0; i < n; i++) {
                int w = snprintf(buf + o, size - o, "%s%s=%s", i ? "&" : "", e[i].key, e[i].value);
                if (w < 0 || (size_t)w >= size - o) {
                        buf[0] = 0;
                        return -ENOBUFS;
                }
                o += (size_t)w;
        }
        return (int)o;
}

/* ---- names ---- */

bool aws_charset(const char *s, size_t min, size_t max, const char *extra) {
        size_t n;

        if (!s)
                return false;
        n = strnlen(s, max + 1);
        if (n < min || n > max)
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char)s[i];
                if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                      (ch && strchr(extra, ch))))
                        return false;
        }
        return true;
}

bool aws_thing_name_valid(const char *s) {
        return aws_charset(s, 1, AWS_NAME_MAX, "_-");
}

bool aws_policy_name_valid(const char *s) {
        if (!aws_charset(s, 1, AWS_NAME_MAX, "_.-"))
                return false;
        return strspn(s, ".") != strlen(s);
}

bool aws_attr_name_valid(const char *s) {
        return aws_charset(s, 1, 128, "_.,@/:#-");
}

bool aws_attr_value_valid(const char *s) {
        return aws_charset(s, 0, AWS_ATTR_VALUE_MAX, "_.,@/:#=[]-");
}

bool aws_cert_id_valid(const char *s) {
        if (!s || strnlen(s, AWS_CERT_ID_LEN + 1) != AWS_CERT_ID_LEN)
                return false;
        for (size_t i = 0; i < AWS_CERT_ID_LEN; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

bool aws_arn_valid(const char *s) {
        size_t n;

        if (!s || strncmp(s, "arn:", 4) != 0)
                return false;
        n = strnlen(s, AWS_ARN_MAX + 1);
        if (n > AWS_ARN_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
                        return false;
        return true;
}

bool aws_region_valid(const char *s) {
        return aws_charset(s, 1, 32, "-") && strpbrk(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == NULL;
}

/* ---- helpers ---- */

int aws_pem_from_der(const uint8_t *der, size_t len, char **ret) {
        static const char head[] = "-----BEGIN CERTIFICATE-----\n", tail[] = "-----END CERTIFICATE-----\n";
        _cleanup_free_ char *b64 = NULL, *pem = NULL;
        size_t b64len, o = 0;

        if (!der || len == 0 || len > 32768)
                return -EINVAL;
        b64 = malloc(4 * ((len + 2) / 3) + 1);
        if (!b64)
                return -ENOMEM;
        b64len = (size_t)EVP_EncodeBlock((unsigned char *)b64, der, (int)len);
        pem = malloc(sizeof head + b64len + b64len / 64 + 2 + sizeof tail);
        if (!pem)
                return -ENOMEM;
        memcpy(pem, head, sizeof head - 1);
        o = sizeof head - 1;
        for (size_t i = 0; i < b64len; i += 64) {
                size_t n = MIN((size_t)64, b64len - i);
                memcpy(pem + o, b64 + i, n);
                o += n;
                pem[o++] = '\n';
        }
        memcpy(pem + o, tail, sizeof tail);
        *ret = TAKE_PTR(pem);
        return 0;
}

int aws_cert_id(const uint8_t *der, size_t len, char ret[AWS_CERT_ID_LEN + 1]) {
        uint8_t md[32];
        unsigned mdlen = 0;

        if (!der || len == 0)
                return -EINVAL;
        if (!EVP_Digest(der, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
                return -EIO;
        hex_encode(md, 32, ret, false);
        return 0;
}

int aws_template_expand(const char *tmpl, const struct aws_template_var *vars, size_t n_vars, char **ret,
                        char *err, size_t errlen) {
        static const char prefix[] = "${provd:";
        _cleanup_free_ char *out = NULL;
        size_t cap, o = 0, tlen;

        if (!tmpl)
                return -EINVAL;
        tlen = strlen(tmpl);
        if (tlen > AWS_POLICY_MAX)
                return snprintf(err, errlen, "template longer than %d bytes", AWS_POLICY_MAX), -E2BIG;
        cap = AWS_POLICY_MAX + 1;
        out = malloc(cap);
        if (!out)
                return -ENOMEM;
        for (const char *p = tmpl; *p;) {
                const char *v = NULL;
                size_t skip = 1;

                if (strncmp(p, prefix, sizeof prefix - 1) == 0) {
                        const char *name = p + sizeof prefix - 1, *end = strchr(name, '}');
                        size_t nlen = end ? (size_t)(end - name) : 0;
                        size_t i;

                        if (!end)
                                return snprintf(err, errlen, "unterminated ${provd:"), -EINVAL;
                        for (i = 0; i < n_vars; i++)
                                if (strlen(vars[i].name) == nlen && strncmp(vars[i].name, name, nlen) == 0)
                                        break;
                        if (i == n_vars)
                                return snprintf(err, errlen, "unknown variable ${provd:%.*s}", (int)MIN(nlen, (size_t)64),
                                                name), -EINVAL;
                        if (!vars[i].value)
                                return snprintf(err, errlen, "${provd:%s} is used but not configured",
                                                vars[i].name), -EINVAL;
                        v = vars[i].value;
                        /* Inserted verbatim, inside JSON strings: nothing that would need escaping. */
                        for (const char *q = v; *q; q++)
                                if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f || *q == '"' || *q == '\\')
                                        return snprintf(err, errlen, "the value of ${provd:%s} has a character that "
                                                        "cannot go into JSON unescaped", vars[i].name), -EINVAL;
                        skip = (size_t)(end - p) + 1;
                }
                size_t n = v ? strlen(v) : 1;
                if (o + n >= cap)
                        return snprintf(err, errlen, "expanded template longer than %d bytes", AWS_POLICY_MAX), -E2BIG;
                memcpy(out + o, v ? v : p, n);
                o += n;
                p += skip;
        }
        out[o] = 0;
        *ret = TAKE_PTR(out);
        return 0;
}

int aws_endpoint_region(const char *endpoint, char *buf, size_t size) {
        const char *h = endpoint, *end, *dot;
        size_t hlen, n;

        if (!endpoint)
                return -EINVAL;
        if (strncasecmp(h, "https://", 8) == 0)
                h += 8;
        else if (strncasecmp(h, "http://", 7) == 0)
                h += 7;
        hlen = strcspn(h, ":/");
        if (hlen > 4 && strncasecmp(h, "iot.", 4) == 0)
                h += 4, hlen -= 4;
        else if (hlen > 9 && strncasecmp(h, "iot-fips.", 9) == 0)
                h += 9, hlen -= 9;
        else
                return -ENOENT;
        dot = memchr(h, '.', hlen);
        if (!dot)
                return -ENOENT;
        end = h + hlen;
        if (!((size_t)(end - dot) == strlen(".amazonaws.com") && strncasecmp(dot, ".amazonaws.com", 14) == 0) &&
            !((size_t)(end - dot) == strlen(".amazonaws.com.cn") && strncasecmp(dot, ".amazonaws.com.cn", 17) == 0))
                return -ENOENT;
        n = (size_t)(dot - h);
        if (n + 1 > size)
                return -ENOBUFS;
        memcpy(buf, h, n);
        buf[n] = 0;
        if (!aws_region_valid(buf))
                return -ENOENT;
        return (int)n;
}
