// A module stuck in its init for init_ms (tests/boards/test_board_faults.py): the plan's deadline passes
// while insmod waits, and the board must still be left as found once the init returns.
#include <linux/delay.h>
#include <linux/module.h>

static unsigned int init_ms = 25000;
module_param(init_ms, uint, 0444);

static int __init slow_init_init(void)
{
	msleep(init_ms);
	return 0;
}

static void __exit slow_init_exit(void)
{
}

module_init(slow_init_init);
module_exit(slow_init_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodkit test: a module whose init takes init_ms milliseconds");
