// A module whose init writes through NULL: an oops (oops=panic on the targets' command line makes it a panic).
#include <linux/kernel.h>
#include <linux/module.h>
static int __init fault_oops_init(void)
{
	pr_emerg("kit_fault: fault_oops starts\n");
	*(volatile int *)0 = 1;
	return 0;
}
module_init(fault_oops_init);
MODULE_LICENSE("GPL");
