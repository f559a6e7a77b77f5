// A module whose init panics.
#include <linux/kernel.h>
#include <linux/module.h>
static int __init fault_panic_init(void)
{
	pr_emerg("kit_fault: fault_panic starts\n");
	panic("fault_panic: deliberate panic from module_init");
	return 0;
}
module_init(fault_panic_init);
MODULE_LICENSE("GPL");
