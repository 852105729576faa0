/* Device sections: the device list's walk for save and load. vmstate knows
 * no device; each device names its section type and judges its payload
 * (devices/device.h). Firecracker's per-device Persist, in C. */
#include "migrate/state/vmstate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/device.h"
#include "migrate/proto/stream.h"
#include "migrate/state/vmstate_int.h"
#include "vmm/core/kvm.h"
#include "vmm/core/vm.h"

int vmstate_save_devices(struct device_list *l, struct vmstate_wbuf *b,
			 char *err, size_t errlen)
{
	uint8_t *buf = malloc(DEVICE_STATE_MAX);
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	/* The lock keeps back-ends (console input) off the devices while
	 * they are copied. */
	device_list_lock(l);
	for (int i = 0; i < l->n && !ret; i++) {
		const struct device *d = &l->devs[i];
		uint32_t type = d->ops->state_type;
		int n;

		if (!type || !d->ops->save)
			continue;
		if (!vmstate_is_dev_type(type)) {
			KVM_ERR(err, errlen, "vmstate_save: device %s claims section type 0x%x, not a device type",
				d->ops->name, type);
			ret = -EINVAL;
			break;
		}
		n = d->ops->save(d->state, buf, DEVICE_STATE_MAX);
		if (n < 0) {
			KVM_ERR(err, errlen, "vmstate_save: device %s: %s", d->ops->name, strerror(-n));
			ret = n;
		} else if (n > 0) {
			ret = vmstate_wb_put(b, type, VMSTATE_VM_SCOPE, buf, (size_t)n);
		}
	}
	device_list_unlock(l);
	free(buf);
	return ret;
}

static const struct vmstate_devsec *find_sec(const struct vmstate_parsed *ps,
					     uint32_t type)
{
	for (int k = 0; k < ps->ndev; k++)
		if (ps->dev[k].type == type)
			return &ps->dev[k];
	return NULL;
}

int vmstate_check_devices(struct device_list *l, const struct vmstate_parsed *ps,
			  char *err, size_t errlen)
{
	char why[200];

	/* A mandatory section no device here owns is state this VM would
	 * drop; an optional one is skipped, as the format promises. */
	for (int k = 0; k < ps->ndev; k++) {
		uint32_t type = ps->dev[k].type;

		if (!(type & VMSTATE_SEC_OPTIONAL) && !device_find_state(l, type)) {
			KVM_ERR(err, errlen, "vmstate_load: unknown mandatory section type 0x%x (no such device here)",
				type);
			return -EPROTO;
		}
	}
	for (int i = 0; i < l->n; i++) {
		const struct device_ops *o = l->devs[i].ops;
		const struct vmstate_devsec *s;
		int ret;

		if (!o->state_type)
			continue;
		s = find_sec(ps, o->state_type);
		if (!s) {
			if (o->state_type & VMSTATE_SEC_OPTIONAL)
				continue;
			KVM_ERR(err, errlen, "vmstate_load: no %s section (type 0x%x)", o->name,
				o->state_type);
			return -EINVAL;
		}
		why[0] = 0;
		ret = o->check ? o->check(s->s.p, s->s.len, why, sizeof(why)) : 0;
		if (ret) {
			KVM_ERR(err, errlen, "vmstate_load: %s state (v%u) rejected: %s", o->name,
				o->state_version, why[0] ? why : strerror(-ret));
			return ret;
		}
	}
	return 0;
}

int vmstate_load_devices(struct device_list *l, const struct vmstate_parsed *ps,
			 char *err, size_t errlen)
{
	char why[200];
	int ret = 0;

	device_list_lock(l);
	for (int i = 0; i < l->n && !ret; i++) {
		const struct device *d = &l->devs[i];
		const struct vmstate_devsec *s = find_sec(ps, d->ops->state_type);

		if (!d->ops->state_type || !s || !d->ops->load)
			continue;
		why[0] = 0;
		ret = d->ops->load(d->state, s->s.p, s->s.len, why, sizeof(why));
		if (ret)
			KVM_ERR(err, errlen, "vmstate_load: %s state rejected: %s", d->ops->name,
				why[0] ? why : strerror(-ret));
	}
	device_list_unlock(l);
	return ret;
}

int vmstate_save_late(struct vm *vm, uint8_t **out, size_t *outlen, char *err,
		      size_t errlen)
{
	struct device_list *l = &vm->devices;
	size_t cap = 64 + DEVICE_STATE_MAX, len = 0;
	uint8_t *buf = malloc(cap);
	int ret = 0;

	*out = NULL;
	*outlen = 0;
	if (!buf)
		return -ENOMEM;
	device_list_lock(l);
	for (int i = 0; i < l->n && !ret; i++) {
		const struct device *d = &l->devs[i];
		int n;

		if (!d->ops->save_late || !d->ops->state_type)
			continue;
		if (cap - len < 8 + DEVICE_STATE_MAX) {
			uint8_t *b2 = realloc(buf, cap * 2);

			if (!b2) {
				ret = -ENOMEM;
				break;
			}
			buf = b2;
			cap *= 2;
		}
		n = d->ops->save_late(d->state, buf + len + 8, DEVICE_STATE_MAX);
		if (n < 0) {
			KVM_ERR(err, errlen, "vmstate_save_late: device %s: %s", d->ops->name,
				strerror(-n));
			ret = n;
		} else if (n > 0) {
			le_put32(buf + len, d->ops->state_type);
			le_put32(buf + len + 4, (uint32_t)n);
			len += 8 + (size_t)n;
		}
	}
	device_list_unlock(l);
	if (ret || !len) {
		free(buf);
		return ret;
	}
	*out = buf;
	*outlen = len;
	return 0;
}

int vmstate_load_late(struct vm *vm, const uint8_t *blob, size_t len, char *err,
		      size_t errlen)
{
	struct device_list *l = &vm->devices;
	size_t off = 0;
	int ret = 0;

	device_list_lock(l);
	while (off < len && !ret) {
		const struct device *d;
		uint32_t type, n;

		if (len - off < 8 || (n = le_get32(blob + off + 4)) > len - off - 8 ||
		    n > DEVICE_STATE_MAX) {
			KVM_ERR(err, errlen, "bad LATE: entry at %zu is cut short", off);
			ret = -EPROTO;
			break;
		}
		type = le_get32(blob + off);
		d = device_find_state(l, type);
		if (!d || !d->ops->load_late) {
			KVM_ERR(err, errlen, "bad LATE: no device here takes section type 0x%x", type);
			ret = -EPROTO;
			break;
		}
		ret = d->ops->load_late(d->state, blob + off + 8, n, err, errlen);
		off += 8 + n;
	}
	device_list_unlock(l);
	return ret;
}
