#include <linux/module.h>
#include <linux/vmalloc.h>
static void *p;
static int __init h_init(void){ p = vmalloc(100); pr_info("hello %px\n", p); return 0; }
static void __exit h_exit(void){ vfree(p); }
module_init(h_init); module_exit(h_exit); MODULE_LICENSE("GPL");
