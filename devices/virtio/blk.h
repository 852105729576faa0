/* virtio-blk (virtio 1.x, 5.2) over the virtio-pci transport: one request
 * queue; requests IN, OUT, FLUSH, GET_ID, DISCARD and WRITE_ZEROES; the
 * capacity, seg_max, blk_size and the discard/write-zeroes limits in the
 * config space; features VERSION_1, SEG_MAX, BLK_SIZE, FLUSH, RO (a
 * read-only disk), DISCARD, WRITE_ZEROES, CONFIG_WCE. Every request is
 * judged before any byte moves: a header or status of the wrong size, a
 * sector beyond the capacity, a length that overflows or is not whole
 * sectors, a write to a read-only disk get an error status, never an
 * access outside guest RAM or the image. Pure: the image is reached through
 * struct virtio_blk_backend (a file in the VM, a buffer in tests), and the
 * requests are run by the back-end's thread via virtio_blk_process, never
 * on a vCPU. */
#ifndef MINIVMM_VIRTIO_BLK_H
#define MINIVMM_VIRTIO_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/device.h"
#include "devices/pci.h"
#include "devices/virtio/virtio_pci.h"

#define VIRTIO_ID_BLOCK 2
#define VIRTIO_BLK_STATE_TYPE 0x0011 /* mandatory: a VM with a disk needs it */
#define VIRTIO_BLK_STATE_VERSION 1

#define VIRTIO_BLK_F_SEG_MAX (1ULL << 2)
#define VIRTIO_BLK_F_RO (1ULL << 5)
#define VIRTIO_BLK_F_BLK_SIZE (1ULL << 6)
#define VIRTIO_BLK_F_FLUSH (1ULL << 9)
#define VIRTIO_BLK_F_CONFIG_WCE (1ULL << 11)
#define VIRTIO_BLK_F_DISCARD (1ULL << 13)
#define VIRTIO_BLK_F_WRITE_ZEROES (1ULL << 14)

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_SECTOR 512u
#define VIRTIO_BLK_HDR_LEN 16
#define VIRTIO_BLK_ID_LEN 20
#define VIRTIO_BLK_QSIZE 128
#define VIRTIO_BLK_SEG_MAX (VIRTIO_BLK_QSIZE - 2) /* header and status take two */
#define VIRTIO_BLK_DISCARD_SEG_MAX 16
#define VIRTIO_BLK_DISCARD_SECTORS_MAX (1u << 22) /* 2 GiB per segment */
/* Data moves between the guest's buffers and the image through this. */
#define VIRTIO_BLK_BOUNCE (256u << 10)

struct virtio_blk_backend {
	/* off and len are bytes, checked by the device to lie inside the
	 * capacity and to be whole sectors; buf is 4 KiB-aligned. 0 or
	 * -errno (the guest gets IOERR). */
	int (*read)(void *opaque, uint64_t off, void *buf, size_t len);
	int (*write)(void *opaque, uint64_t off, const void *buf, size_t len);
	int (*flush)(void *opaque);
	/* Deallocate (zeroes false) or zero (true) a range; NULL: neither
	 * DISCARD nor WRITE_ZEROES is offered. */
	int (*discard)(void *opaque, uint64_t off, uint64_t len, bool zeroes);
	/* Run virtio_blk_process soon on the back-end thread. Called under
	 * the device lock. */
	void (*wake)(void *opaque, int q);
	void *opaque;
};

struct virtio_blk_conf {
	uint64_t capacity;   /* bytes, a multiple of 512 */
	uint32_t blk_size;   /* what the back-end needs I/O aligned to (512, or O_DIRECT's) */
	bool readonly;
	bool writeback;      /* the back-end caches writes (a FLUSH is needed) */
	char serial[VIRTIO_BLK_ID_LEN + 1];
	struct virtq_mem mem;
	struct virtio_blk_backend be;
	void (*irq)(void *opaque, int irq, int level);
	void *irq_opaque;
	void (*notify_map)(void *opaque, int q, uint64_t gpa, bool on);
	void *notify_opaque;
};

struct virtio_blk {
	struct virtio_pci vp;
	uint64_t capacity;
	uint32_t blk_size;
	bool readonly;
	uint8_t writeback;   /* the config's writeback byte (the driver may toggle it) */
	char serial[VIRTIO_BLK_ID_LEN];
	struct virtio_blk_backend be;
	bool quiesced;
	uint8_t *bounce;     /* VIRTIO_BLK_BOUNCE bytes, 4 KiB-aligned */
	struct virtq_chain *chain;
	uint64_t reads, writes, flushes, discards, errors, bytes_read, bytes_written;
};

/* Creates the device on l and plugs it into h's bus 0. */
int virtio_blk_create(struct device_list *l, struct pci_host *h,
		      const struct virtio_blk_conf *conf, struct virtio_blk **out,
		      char *err, size_t errlen);
/* The back-end thread's work, under the device lock: every request the
 * driver made available, up to a queue's worth. Returns true when it
 * stopped with work left (call again). */
bool virtio_blk_process(struct virtio_blk *b);

#endif
