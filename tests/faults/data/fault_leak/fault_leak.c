// A module that leaks on purpose: init vmallocs three pages, exit does not vfree them.
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/vmalloc.h>
static void *fault_leak_area;
static int __init fault_leak_init(void)
{
	fault_leak_area = vmalloc(3 * PAGE_SIZE);
	if (!fault_leak_area)
		return -ENOMEM;
	pr_info("fault_leak: area %px\n", fault_leak_area);
	return 0;
}
static void __exit fault_leak_exit(void)
{
	pr_info("fault_leak: leaving %px allocated\n", fault_leak_area);
}
module_init(fault_leak_init);
module_exit(fault_leak_exit);
MODULE_LICENSE("GPL");
