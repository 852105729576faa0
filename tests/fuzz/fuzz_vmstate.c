/* The vmstate parser and loader (migrate/state/): vmstate_check on the
 * buffer, then vmstate_load into a fake VM (fakevm.h: this host's KVM
 * capabilities, no VM fd), whose devices judge and load their sections
 * before the first KVM ioctl fails; then the devices are used a little.
 * The first byte: bit 0 sends the rest to vmstate_load_late (the LATE
 * frame) instead, bit 1 gives the VM a virtio-net. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "migrate/state/vmstate.h"
#include "tests/fuzz/fakevm.h"

/* FUZZ_MKSEED=PATH: writes the fake VM's own state, NIC included, as a
 * seed (tests/fuzz/seeds.py) and exits: real streams come from VMs
 * without a NIC, and a stream from one needs a tap. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static struct fakevm f;
	const char *path = getenv("FUZZ_MKSEED");
	uint8_t *blob = NULL, flag = 2;
	size_t len = 0;
	char err[512];
	FILE *out;

	(void)argc;
	(void)argv;
	if (!path)
		return 0;
	fakevm_init(&f, true, NULL);
	fakevm_poke(&f); /* a pending console line: its optional section too */
	if (vmstate_save(&f.vm, &blob, &len, err, sizeof(err)) < 0) {
		fprintf(stderr, "vmstate_save: %s\n", err);
		exit(1);
	}
	out = fopen(path, "wb");
	if (!out || fwrite(&flag, 1, 1, out) != 1 || fwrite(blob, 1, len, out) != len ||
	    fclose(out))
		exit(1);
	free(blob);
	fakevm_destroy(&f);
	exit(0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fakevm f;
	char err[512];
	uint32_t ncpus;
	uint64_t mem;

	if (size < 1)
		return 0;
	fakevm_init(&f, data[0] & 2, NULL);
	if (data[0] & 1) {
		vmstate_load_late(&f.vm, data + 1, size - 1, err, sizeof(err));
	} else {
		if (vmstate_check(data + 1, size - 1, &ncpus, &mem, err, sizeof(err)) == 0 &&
		    (ncpus < 1 || mem == 0))
			abort();
		int ret = vmstate_load(&f.vm, data + 1, size - 1, err, sizeof(err));

		if (getenv("FUZZ_VERBOSE"))
			fprintf(stderr, "vmstate: %d %s\n", ret, ret ? err : "loaded");
	}
	fakevm_poke(&f);
	fakevm_destroy(&f);
	return 0;
}
