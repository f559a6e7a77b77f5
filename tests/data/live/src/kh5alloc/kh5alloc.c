// SPDX-License-Identifier: GPL-2.0
/* Allocator fixture: after vm_unmap_aliases(), a sequence of vmalloc/vmap/ioremap
 * requests whose addresses are printed (%px) and held until rmmod, then a vmap
 * fill loop (256-page chunks until failure, then 1-page chunks) that is released
 * before init returns. Built by tests/data/live/src/build.sh. */
#include <linux/module.h>
#include <linux/vmalloc.h>
#include <linux/io.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/gfp.h>

#define NFILL 2048
static void *held[8];
static void __iomem *io[2];
static void *freed;
static void **fill;

static void kh5_fill(void)
{
	struct page *page = alloc_page(GFP_KERNEL);
	struct page **pages = kmalloc_array(256, sizeof(*pages), GFP_KERNEL);
	unsigned long big = 0, small = 0, bf = 0, bl = 0, sf = 0, sl = 0;
	unsigned int i, n = 0;
	void *p;

	fill = kcalloc(NFILL * 16, sizeof(*fill), GFP_KERNEL);
	if (!page || !pages || !fill)
		goto out;
	for (i = 0; i < 256; i++)
		pages[i] = page;
	while (n < NFILL * 16 && (p = vmap(pages, 256, VM_MAP, PAGE_KERNEL))) {
		fill[n++] = p;
		if (!big++)
			bf = (unsigned long)p;
		bl = (unsigned long)p;
	}
	while (n < NFILL * 16 && (p = vmap(pages, 1, VM_MAP, PAGE_KERNEL))) {
		fill[n++] = p;
		if (!small++)
			sf = (unsigned long)p;
		sl = (unsigned long)p;
	}
	pr_info("kh5alloc: fill big_count=%lu big_first=0x%lx big_last=0x%lx small_count=%lu small_first=0x%lx small_last=0x%lx\n",
		big, bf, bl, small, sf, sl);
	while (n)
		vunmap(fill[--n]);
	vm_unmap_aliases();
out:
	kfree(fill);
	kfree(pages);
	if (page)
		__free_page(page);
}

static int __init kh5_init(void)
{
	vm_unmap_aliases();
	held[0] = vmalloc(100);
	held[1] = vmalloc(5 * PAGE_SIZE + 1);
	freed = vmalloc(2 * PAGE_SIZE);
	held[2] = vmalloc(1025 * PAGE_SIZE);
	held[3] = vzalloc(3 * PAGE_SIZE);
	held[4] = vmalloc_user(3 * PAGE_SIZE);	/* align SHMLBA (16 KiB on ARM), VM_USERMAP */
	io[0] = ioremap(0x09000000, 0x1000);
	io[1] = ioremap(0x0a000000, 0x30000);
	vfree(freed);
	held[5] = vmalloc(PAGE_SIZE);
	held[6] = vmalloc(64 * PAGE_SIZE);
	pr_info("kh5alloc: seq subpage=%px several=%px freed=%px big=%px vzalloc=%px user=%px uart=%px large=%px after_free=%px sixtyfour=%px\n",
		held[0], held[1], freed, held[2], held[3], held[4], io[0], io[1], held[5], held[6]);
	kh5_fill();
	return 0;
}

static void __exit kh5_exit(void)
{
	int i;

	for (i = 0; i < 8; i++)
		vfree(held[i]);
	for (i = 0; i < 2; i++)
		if (io[i])
			iounmap(io[i]);
}

module_init(kh5_init);
module_exit(kh5_exit);
MODULE_LICENSE("GPL");
