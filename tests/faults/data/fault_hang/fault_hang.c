// A module whose init sleeps for ten minutes (insmod never returns within any plan timeout).
#include <linux/delay.h>
#include <linux/kernel.h>
#include <linux/module.h>
static int __init fault_hang_init(void)
{
	int i;

	pr_emerg("kit_fault: fault_hang starts\n");
	for (i = 0; i < 6000; i++)
		msleep(100);
	return 0;
}
module_init(fault_hang_init);
MODULE_LICENSE("GPL");
