/* SPDX-License-Identifier: MIT */
/* Host-library internals: the one place core status codes become -errno. */
#ifndef STATION_PROTO_HOST_INTERNAL_H
#define STATION_PROTO_HOST_INTERNAL_H

#include <errno.h>
#include <limits.h>

#include "sp-core.h"
#include "station-proto/sp.h"

static inline int sp_errno(int spc) {
        switch (spc) {
        case SPC_OK:            return 0;
        case SPC_E_BADMSG:      return -EBADMSG;
        case SPC_E_CRC:         return -EBADMSG;
        case SPC_E_MSGSIZE:     return -EMSGSIZE;
        case SPC_E_NOBUFS:      return -ENOBUFS;
        case SPC_E_NOENT:       return -ENOENT;
        case SPC_E_INVAL:       return -EINVAL;
        default:                return -EIO;
        }
}

#endif
