#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/vmalloc.h>
#include <linux/mm.h>
#include <linux/highmem.h>
static void *p, *q;
static int __init d_init(void)
{
	vm_unmap_aliases();
	pr_info("KTAP version 1\n");
	pr_info("1..3\n");
	pr_info("# layout.PAGE_OFFSET=0x%px\n", (void *)PAGE_OFFSET);
	pr_info("# layout.VMALLOC_START=0x%px\n", (void *)VMALLOC_START);
	pr_info("# layout.VMALLOC_END=0x%px\n", (void *)VMALLOC_END);
	pr_info("# layout.PAGE_SIZE=%lu\n", PAGE_SIZE);
	pr_info("ok 1 layout\n");
	p = vmalloc(100);
	q = vmalloc(1025 * PAGE_SIZE);
	pr_info("# subpage.addr=0x%px\n", p);
	pr_info("# subpage.size=100\n");
	pr_info("# big.addr=0x%px\n", q);
	pr_info("# big.size=%lu\n", 1025 * PAGE_SIZE);
	pr_info("%s 2 vmalloc\n", (p && q) ? "ok" : "not ok");
	pr_info("ok 3 vmalloc_exec # SKIP vmalloc_exec() not in this kernel\n");
	return 0;
}
static void __exit d_exit(void){ vfree(p); vfree(q); pr_info("# exit.freed=2\n"); }
module_init(d_init); module_exit(d_exit); MODULE_LICENSE("GPL");
